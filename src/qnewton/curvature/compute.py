"""Curvature blocks and mean-loss gradients from one evaluated closure.

All curvature is built from a *closure* in the style of ``torch.optim``: the closure runs the model
and returns the per-sample losses (shape ``(S,)``, the objective being their mean) and, for kinds
that need them (the GGN), also the model outputs whose row ``s`` the loss of sample ``s`` depends
on. Everything is computed with :func:`torch.autograd.grad` on the graph the closure built; no
model object is needed. Parameter ``.grad`` fields are never touched and the graph is retained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from qnewton.curvature.config import CurvatureBudgetError, CurvatureConfig
from qnewton.curvature.kind import BuildInputs, ClosureError, CurvatureKind
from qnewton.curvature.kinds import CURVATURES
from qnewton.curvature.memory import format_bytes
from qnewton.curvature.params import ParamBlock, flatten_block
from qnewton.curvature.per_sample.recording import release_recording
from qnewton.curvature.products import ProductContext
from qnewton.curvature.representation import CurvatureBlock, arithmetic_dtype

#: What :func:`compute_curvature` does with a block over ``max_block_bytes``.
OVER_BUDGET = ("raise", "skip", "matrix-free")


@dataclass
class CurvatureResult:
    """What :func:`compute_curvature` returns.

    Attributes:
        blocks: one :class:`CurvatureBlock` per parameter block (same order): a
            :class:`~qnewton.curvature.representation.MatrixFreeBlock` for a block over budget
            (``over_budget="matrix-free"``), ``None`` for one skipped (``"skip"``).
        grads: per block, the gradient of the mean loss, flat ``(N,)`` in the block flattening
            order (the order of ``p.grad.reshape(-1)``), in ``config.dtype`` (``None``: the
            losses' dtype). Always present.
        loss: the mean loss (detached scalar, in the losses' dtype).
        skipped: ``{block name: reason}`` for blocks returned as ``None``.
        matrix_free: ``{block name: reason}`` for blocks returned matrix-free (over budget).
        kind: the curvature kind. num_samples: S. num_outputs: C for the GGN, else ``None``.
        samples: the sorted indices of the curvature subset (``None``: all S samples);
            curvature_samples: how many samples the curvature used (k, or S).
        bypass: GGN kinds: ``{block name: note}`` for blocks whose losses reach them other than
            through the outputs (an L2 penalty); bypass_covered: every such term's curvature is
            in its block (:mod:`qnewton.curvature.bypass`), so the GGN misses nothing.
        substituted: why ``kind`` is not the configured one (``"ggn"`` with more outputs than
            ``CurvatureConfig.ggn_max_outputs`` builds ``"ggn-mc"``), else ``None``.
        paths: factor kinds: ``{block name: path of its per-sample rows}`` — ``one-pass``,
            ``one-pass+residual``, ``functional`` or ``loop: <why>`` (docs/method.md §4.7).
    """

    blocks: list[CurvatureBlock | None]
    grads: list[torch.Tensor]
    loss: torch.Tensor
    skipped: dict[str, str] = field(default_factory=dict)
    matrix_free: dict[str, str] = field(default_factory=dict)
    kind: str = "fisher"
    num_samples: int = 0
    num_outputs: int | None = None
    samples: torch.Tensor | None = None
    curvature_samples: int = 0
    bypass: dict[str, str] = field(default_factory=dict)
    bypass_covered: bool = False
    substituted: str | None = None
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def substitution(self) -> tuple[str, str] | None:
        """``(kind built, why)`` when :attr:`substituted`, else ``None`` (for the ledger)."""
        return None if self.substituted is None else (self.kind, self.substituted)


def evaluate_closure(closure: Callable[[], object]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run a closure (with grad enabled) and return ``(losses, outputs or None)``.

    The closure returns either ``losses`` (per-sample losses, shape ``(S,)``; the objective is
    their mean) or a pair ``(losses, outputs)`` where ``outputs`` reshapes to ``(S, C)`` and the
    loss of sample ``s`` depends only on row ``s`` (needed for the GGN).
    """
    with torch.enable_grad():
        ret = closure()
    if isinstance(ret, torch.Tensor):
        return ret, None
    if isinstance(ret, tuple | list) and len(ret) == 2:
        losses, outputs = ret
        if isinstance(losses, torch.Tensor) and isinstance(outputs, torch.Tensor):
            return losses, outputs
    raise TypeError(
        "the closure must return per-sample losses (a tensor of shape (S,)) or a pair "
        f"(losses, outputs) of tensors; got {type(ret).__name__}"
    )


def estimate_block_bytes(kind: str, n: int, num_samples: int, num_outputs: int = 1,
                         dtype: torch.dtype = torch.float64) -> int:
    """Memory in bytes of one block of kind ``kind`` as it will be stored, before building it
    (hessian ``N²``, fisher ``S·N``, ggn ``S·C·N`` elements)."""
    curvature = CURVATURES[kind]
    for label, value in (("n", n), ("num_samples", num_samples), ("num_outputs", num_outputs)):
        if value < 0:
            raise ValueError(f"{label} must be >= 0, got {value}")
    return curvature.block_bytes(n, num_samples, num_outputs, dtype)


def _budget_message(block: ParamBlock, kind: CurvatureKind, needed: int, s: int, c: int,
                    config: CurvatureConfig) -> str:
    dtype_name = str(config.dtype).removeprefix("torch.")
    return (f"block {block.name!r} needs {format_bytes(needed)} "
            f"{kind.storage(block.numel, s, c, dtype_name)}, over the "
            f"{format_bytes(config.max_block_bytes)} budget (max_block_bytes); "
            f"{kind.budget_advice(s, c)}")


def _validate_inputs(losses: torch.Tensor, blocks: Sequence[ParamBlock], kind: CurvatureKind,
                     outputs: torch.Tensor | None) -> tuple[int, int | None]:
    if not isinstance(losses, torch.Tensor):
        raise TypeError(f"losses must be a tensor, got {type(losses).__name__}")
    if not losses.requires_grad:
        raise ValueError(
            "losses do not require grad (was the closure run under torch.no_grad(), or do the "
            "losses not depend on any trainable parameter?)"
        )
    if not losses.is_floating_point():
        raise ValueError(f"losses must be floating point, got {losses.dtype}")
    if losses.numel() == 0:
        raise ValueError("losses is empty")
    if not blocks:
        raise ValueError("no parameter blocks given")
    for b in blocks:
        if not isinstance(b, ParamBlock):
            raise TypeError(f"blocks must be ParamBlock instances, got {type(b).__name__}")
    ids = [id(p) for b in blocks for p in b.params]
    if len(set(ids)) != len(ids):
        raise ValueError("a parameter appears in more than one block")
    if kind.per_sample and losses.ndim == 0:  # the commonest slip: a mean taken out of habit
        raise ClosureError(
            f"curvature={kind.name!r} needs per-sample losses of shape (S,), got a scalar (a "
            "reduced loss): return the losses unreduced, e.g. cross_entropy(..., "
            "reduction='none'); QNewton's objective is their mean")
    if kind.per_sample and losses.ndim != 1:
        raise ValueError(
            f"curvature={kind.name!r} needs per-sample losses of shape (S,), got shape "
            f"{tuple(losses.shape)} (flatten per-token losses to (B·T,); do not reduce them)"
        )
    s = losses.numel()
    if not kind.needs_outputs:
        return s, None
    if outputs is None:
        raise ValueError(
            f"curvature={kind.name!r} needs the model outputs: the closure must return "
            "(losses, outputs)"
        )
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"outputs must be a tensor, got {type(outputs).__name__}")
    if not outputs.requires_grad:
        raise ValueError("outputs do not require grad; return the model outputs, not a detached "
                         "copy")
    if outputs.numel() == 0 or outputs.numel() % s != 0:
        raise ValueError(
            f"outputs of shape {tuple(outputs.shape)} do not reshape to (S, C) with S={s} "
            "per-sample losses"
        )
    return s, outputs.numel() // s


def check_samples(samples: object, num_samples: int) -> torch.Tensor | None:
    """``samples`` as sorted, distinct ``int64`` indices in ``[0, S)`` on the CPU (``None``, or
    all S of them, gives ``None``: no subset); a clear ``ValueError`` otherwise."""
    if samples is None:
        return None
    idx = torch.as_tensor(samples).detach().cpu()
    if idx.ndim != 1 or idx.numel() == 0 or idx.dtype.is_floating_point or idx.is_complex() or (
            idx.dtype == torch.bool):
        raise ValueError("samples must be a non-empty 1-D sequence of integer sample indices, "
                         f"got {samples!r}")
    idx = idx.to(torch.int64).sort().values
    if int(idx[0]) < 0 or int(idx[-1]) >= num_samples:
        raise ValueError(f"samples must be indices in [0, {num_samples - 1}] (S={num_samples}), "
                         f"got a range [{int(idx[0])}, {int(idx[-1])}]")
    if bool((idx[1:] == idx[:-1]).any()):
        raise ValueError("samples must be distinct indices, got repeated ones")
    return None if idx.numel() == num_samples else idx


def mean_loss_gradients(losses: torch.Tensor, blocks: Sequence[ParamBlock],
                        dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """Per block, the flat gradient of ``losses.mean()`` in ``dtype`` (zeros for parameters the
    losses don't use) — the gradient alone, for steps that reuse earlier curvature. The graph is
    retained."""
    params = [p for b in blocks for p in b.params]
    with torch.enable_grad():
        g_all = torch.autograd.grad(losses.mean(), params, retain_graph=True, allow_unused=True)
    grads, pos = [], 0
    for b in blocks:
        pieces = [torch.zeros_like(p) if g is None else g
                  for g, p in zip(g_all[pos : pos + len(b.params)], b.params, strict=True)]
        pos += len(b.params)
        grads.append(flatten_block(pieces).to(dtype))
    return grads


def compute_curvature(
    losses: torch.Tensor,
    blocks: Sequence[ParamBlock],
    config: CurvatureConfig | None = None,
    outputs: torch.Tensor | None = None,
    *,
    skip_over_budget: bool = False,
    over_budget: str | None = None,
    samples: Sequence[int] | torch.Tensor | None = None,
) -> CurvatureResult:
    """Curvature blocks and mean-loss gradients for ``blocks`` from a built autograd graph.

    Args:
        losses: per-sample losses ``(S,)`` computed from the parameters (objective: the mean).
            For the exact Hessian any shape (including a scalar) is accepted.
        blocks: the parameter blocks; a parameter may belong to at most one block. Parameters
            the losses don't depend on get zero gradient and zero curvature.
        config: :class:`CurvatureConfig` (default: empirical Fisher).
        outputs: for kinds that need them (``"ggn"``), the model outputs, reshaping to ``(S, C)``
            with the loss of sample ``s`` depending only on row ``s``.
        skip_over_budget: if ``False`` (default) a block over ``config.max_block_bytes`` raises
            :class:`CurvatureBudgetError`; if ``True`` it comes back as ``None`` and the reason
            is recorded in ``result.skipped`` (its gradient is still returned). Shorthand for
            ``over_budget="raise"`` / ``"skip"``; ``over_budget`` takes precedence when given.
        over_budget: one of :data:`OVER_BUDGET`: ``"raise"``, ``"skip"`` (as above) or
            ``"matrix-free"``: the block comes back as a
            :class:`~qnewton.curvature.representation.MatrixFreeBlock` (products on the retained
            graph, nothing of the block's size stored; reason in ``result.matrix_free``). A kind
            without a matrix-free form is skipped instead. The optimizer uses ``"matrix-free"``.
        samples: a curvature subset (indices of per-sample losses; order and repeats are not
            allowed to matter: they are sorted, repeats refused): the curvature is that of the
            mean loss over these k samples (scale 1/k, factors of k or k·C rows in sorted sample
            order), while the gradients are always the full batch's (docs/method.md §4.7,
            "Curvature subsampling and reuse"). ``None`` (default) or all S: every sample.

    What each kind builds is documented on its class (:data:`qnewton.curvature.CURVATURES`).
    """
    config = config or CurvatureConfig()
    kind = CURVATURES[config.kind]
    blocks = list(blocks)
    s, c = _validate_inputs(losses, blocks, kind, outputs)
    if config.dtype is None:  # the model's dtype: a float32 model's factors stay float32
        config = replace(config, dtype=losses.dtype)
    mode = over_budget if over_budget is not None else ("skip" if skip_over_budget else "raise")
    if mode not in OVER_BUDGET:
        raise ValueError(f"over_budget must be one of {OVER_BUDGET}, got {over_budget!r}")
    if samples is not None and losses.ndim != 1:
        raise ValueError("samples (a curvature subset) needs per-sample losses of shape (S,), "
                         f"got shape {tuple(losses.shape)}")
    subset = check_samples(samples, s)
    k = s if subset is None else subset.numel()
    substituted = None
    swap = kind.substitute(k, c or 1, config)
    if swap is not None:  # e.g. the Monte-Carlo GGN for many outputs
        name, substituted = swap
        kind = CURVATURES[name]
        config = replace(config, kind=name)

    built: list[bool] = []
    skipped: dict[str, str] = {}
    matrix_free: dict[str, str] = {}
    free: list[int] = []
    for i, b in enumerate(blocks):
        needed = kind.block_bytes(b.numel, k, c or 1, config.dtype)
        if needed > config.max_block_bytes:
            msg = _budget_message(b, kind, needed, k, c or 1, config)
            if mode == "raise":
                raise CurvatureBudgetError(msg)
            if mode == "matrix-free" and kind.has_matrix_free:
                matrix_free[b.name] = msg
                free.append(i)
            else:
                skipped[b.name] = msg
            built.append(False)
        else:
            built.append(True)

    all_params = [p for b in blocks for p in b.params]
    with torch.enable_grad():
        loss = losses.mean()
        create_graph = (kind.needs_gradient_graph and subset is None
                        and (any(built) or bool(free)))
        g_all = torch.autograd.grad(
            loss, all_params, retain_graph=True, create_graph=create_graph, allow_unused=True
        )
        g_all = [
            torch.zeros_like(p) if g is None else g for g, p in zip(g_all, all_params, strict=True)
        ]
        grads, g_blocks, pos = [], [], 0
        for b in blocks:
            g_b = g_all[pos : pos + len(b.params)]
            pos += len(b.params)
            g_blocks.append(g_b)
            grads.append(flatten_block([g.detach() for g in g_b]).to(config.dtype))
        if subset is not None and kind.needs_gradient_graph and (any(built) or bool(free)):
            # second derivatives of the subset's mean loss (the full gradient has no graph)
            g_blocks = _subset_gradient_graph(losses[subset.to(losses.device)], blocks)
        inputs = BuildInputs(losses=losses, outputs=outputs, blocks=blocks, grads=g_blocks,
                             built=built, num_samples=s, num_outputs=c or 1, config=config,
                             samples=subset)
        curv = kind.build(inputs)
        if free:
            # nothing is stored, so products compute in the blocks' arithmetic dtype
            ctx = ProductContext(losses, outputs, s, c or 1,
                                 replace(config, dtype=arithmetic_dtype(config.dtype)),
                                 samples=subset)
            for i in free:
                curv[i] = kind.matrix_free(blocks[i], g_blocks[i], ctx)
    release_recording()  # the rows are built: the closure's module records are not needed
    return CurvatureResult(blocks=curv, grads=grads, loss=loss.detach(), skipped=skipped,
                           matrix_free=matrix_free, kind=config.kind, num_samples=s,
                           num_outputs=c, samples=subset, curvature_samples=k,
                           bypass=inputs.notes, substituted=substituted, paths=inputs.paths,
                           bypass_covered=bool(inputs.notes) and all(built) and all(
                               name in inputs.covered for name in inputs.notes))


def _subset_gradient_graph(losses: torch.Tensor,
                           blocks: Sequence[ParamBlock]) -> list[list[torch.Tensor]]:
    """Per block, the gradient pieces of ``losses.mean()`` with their graph (zeros if unused)."""
    params = [p for b in blocks for p in b.params]
    g_all = torch.autograd.grad(losses.mean(), params, retain_graph=True, create_graph=True,
                                allow_unused=True)
    out, pos = [], 0
    for b in blocks:
        out.append([torch.zeros_like(p) if g is None else g
                    for g, p in zip(g_all[pos : pos + len(b.params)], b.params, strict=True)])
        pos += len(b.params)
    return out
