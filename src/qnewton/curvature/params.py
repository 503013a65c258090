"""Parameter blocks: which parameter tensors share one curvature block, and their flat order.

Flattening convention: within a block the parameter vector is the concatenation of each tensor's
``.reshape(-1)`` in the block's order (row-major; a Linear weight ``(out, in)`` flattens in
``(out, in)`` order, exactly like ``p.grad.reshape(-1)``). Curvature rows/columns and gradients
all use this order; :func:`unflatten_block` inverts it. (The code release permuted this order
for 3-D inputs, docs/method.md §6.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from qnewton.registry import Registry

#: Name of the block holding a model's own top-level parameters under ``grouping="module"``.
ROOT_MODULE = "<root>"


@dataclass(frozen=True, eq=False)
class ParamBlock:
    """A group of parameter tensors that gets one curvature block.

    Blocks compare and hash by identity. The block's parameter vector is the concatenation of
    ``p.reshape(-1)`` for ``p`` in ``params`` (row-major, the order of ``p.grad.reshape(-1)``).

    Attributes:
        name: the block's name (parameter name, or module name for module grouping).
        params: the tensors of the block (each must require grad), in flattening order.
        numel: total number of scalars N; computed from ``params`` when left at ``-1``.
    """

    name: str
    params: tuple[torch.Tensor, ...] = field(repr=False)
    numel: int = -1

    def __post_init__(self) -> None:
        params = tuple(self.params)
        if not params:
            raise ValueError(f"block {self.name!r} has no parameters")
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor):
                raise TypeError(
                    f"block {self.name!r}: params[{i}] is {type(p).__name__}, not a tensor"
                )
            if not p.requires_grad:
                raise ValueError(f"block {self.name!r}: params[{i}] does not require grad")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"block {self.name!r} lists the same parameter twice")
        total = sum(p.numel() for p in params)
        if self.numel not in (-1, total):
            raise ValueError(f"block {self.name!r}: numel={self.numel} but params hold {total}")
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "numel", total)

    @property
    def shapes(self) -> tuple[torch.Size, ...]:
        return tuple(p.shape for p in self.params)

    def __repr__(self) -> str:
        shapes = ", ".join("×".join(map(str, s)) or "scalar" for s in self.shapes)
        return f"ParamBlock(name={self.name!r}, numel={self.numel}, shapes=[{shapes}])"


def _one_per_tensor(named: list[tuple[str, torch.Tensor]]) -> list[ParamBlock]:
    return [ParamBlock(name, (p,)) for name, p in named]


def _one_per_module(named: list[tuple[str, torch.Tensor]]) -> list[ParamBlock]:
    # The module of ``fc1.weight`` is ``fc1``; a model's own ``weight``/``bias`` (no dot) belong
    # to the root module and form one block, so that e.g. logistic regression keeps its
    # weight-bias coupling. Blocks come in order of first appearance.
    merged: dict[str, list[torch.Tensor]] = {}
    for name, p in named:
        merged.setdefault(name.rpartition(".")[0] or ROOT_MODULE, []).append(p)
    return [ParamBlock(module, tuple(params)) for module, params in merged.items()]


def _one_block(named: list[tuple[str, torch.Tensor]]) -> list[ParamBlock]:
    # Every parameter in one block: a true Newton / Gauss–Newton step with the cross-layer
    # terms the block-diagonal partitions leave out.
    return [ParamBlock(WHOLE_MODEL, tuple(p for _, p in named))] if named else []


#: The name of the one block of ``grouping="model"``.
WHOLE_MODEL = "<model>"

#: How parameter tensors are grouped into curvature blocks.
GROUPINGS: Registry = Registry("grouping")
GROUPINGS.register("tensor", _one_per_tensor)
GROUPINGS.register("module", _one_per_module)
GROUPINGS.register("model", _one_block)

#: ``grouping="auto"``: the whole model is one block up to this many parameters (a true Newton /
#: Gauss–Newton step: its factor-form solve costs 2·N·M² flops for M rows, its dense one N³/3 —
#: modeled ≈ 0.1–0.4 s at N = 4,096 with this machine's calibrated rates), tensor blocks above
#: it (measured on MNIST's 13,002-parameter MLP: test loss 0.441 with tensor blocks, 0.462 with
#: module blocks; docs/method.md §4.12).
AUTO_WHOLE_MODEL_MAX = 4096

#: The groupings a partition takes: the registered ones and ``"auto"``.
PARTITION_GROUPINGS = ("auto", *GROUPINGS)


def auto_grouping(numel: int) -> str:
    """What ``grouping="auto"`` resolves to for ``numel`` live parameters."""
    return "model" if numel <= AUTO_WHOLE_MODEL_MAX else "tensor"


def group_parameters(
    named: Iterable[tuple[str, torch.Tensor]], grouping: str = "tensor"
) -> list[ParamBlock]:
    """Parameter blocks from ``(name, tensor)`` pairs; tensors with ``requires_grad=False`` are
    skipped, and a tensor listed twice (tied weights) counts once, at its first name.

    ``grouping="tensor"``: one block per tensor. ``grouping="module"``: one block per module
    prefix of the names (``fc1.weight`` and ``fc1.bias`` together; top-level parameters together
    as ``"<root>"``). ``"model"``: one block. ``"auto"``: :func:`auto_grouping`.
    """
    if grouping == "auto":
        named = list(named)
        live = sum(p.numel() for _, p in named if isinstance(p, torch.Tensor) and p.requires_grad)
        grouping = auto_grouping(live)
    group = GROUPINGS[grouping]
    seen: set[int] = set()
    kept = []
    for i, (name, p) in enumerate(named):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"parameter {i} ({name!r}) is {type(p).__name__}, not a tensor")
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            kept.append((name, p))
    return group(kept)


def blocks_from_params(
    params: Iterable[torch.Tensor], names: Sequence[str] | None = None
) -> list[ParamBlock]:
    """One block per tensor, skipping tensors with ``requires_grad=False``.

    ``names`` (same length as ``params``) names the blocks; default ``param0, param1, …`` (the
    index in ``params``, counting skipped tensors too). A tensor given twice is an error.
    """
    params = list(params)
    if names is not None:
        names = list(names)
        if len(names) != len(params):
            raise ValueError(f"got {len(names)} names for {len(params)} parameters")
    ids = [id(p) for p in params if isinstance(p, torch.Tensor) and p.requires_grad]
    if len(set(ids)) != len(ids):
        raise ValueError("a parameter appears more than once")
    labels = names if names is not None else [f"param{i}" for i in range(len(params))]
    return group_parameters(zip(labels, params, strict=True), "tensor")


def blocks_from_module(module: torch.nn.Module, grouping: str = "tensor") -> list[ParamBlock]:
    """Parameter blocks of a module's trainable parameters, named as in ``named_parameters()``
    (see :func:`group_parameters` for ``grouping``)."""
    return group_parameters(module.named_parameters(), grouping)


def flatten_block(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate ``t.reshape(-1)`` of each tensor (the block flattening order)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("flatten_block needs at least one tensor")
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_block(vec: torch.Tensor, block: ParamBlock) -> list[torch.Tensor]:
    """Split a flat ``(N,)`` vector into tensors shaped like ``block.params`` (views of ``vec``)."""
    if vec.ndim != 1 or vec.numel() != block.numel:
        raise ValueError(
            f"block {block.name!r} needs a vector of shape ({block.numel},), got {tuple(vec.shape)}"
        )
    sizes = [p.numel() for p in block.params]
    return [piece.view(p.shape) for piece, p in zip(vec.split(sizes), block.params, strict=True)]
