"""Curvature blocks: one symmetric N×N matrix per parameter block.

Stage 1 of the pipeline (DESIGN §3). A block is either *dense* (an explicit N×N matrix, used for
the exact Hessian) or in *factor form* ``scale · Fᵀ F`` with ``F ∈ R^{M×N}`` (the empirical Fisher,
``M = B`` per-sample gradients, and the generalized Gauss-Newton, ``M = B·C`` rows). Factor-form
blocks never have to be formed as N×N matrices: solvers can use Woodbury, CG or matvecs instead.

All curvature is built from a *closure* in the style of ``torch.optim``: the closure runs the model
and returns the per-sample losses (shape ``(S,)``, the objective being their mean) and, for the
GGN, also the model outputs whose row ``s`` the loss of sample ``s`` depends on.

Everything is computed with plain :func:`torch.autograd.grad` on the graph the closure built, for
a given list of :class:`ParamBlock` s; no access to the model object is needed. Parameter
``.grad`` fields are never touched and the graph is always retained, so the caller may still run
``losses.mean().backward()`` afterwards.

Flattening convention: within a block the parameter vector is the concatenation of each tensor's
``.reshape(-1)`` in the block's order (row-major; a Linear weight ``(out, in)`` flattens in
``(out, in)`` order, exactly like ``p.grad.reshape(-1)``). Curvature rows/columns and the returned
gradients all use this order; :func:`unflatten_block` inverts it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

CURVATURE_KINDS = ("hessian", "ggn", "fisher")


class CurvatureBudgetError(MemoryError):
    """A dense curvature block would exceed the configured memory budget."""


@dataclass
class CurvatureBlock:
    """A symmetric positive-semidefinite (Fisher, GGN) or symmetric (Hessian) block.

    Attributes:
        name: the block's name (parameter or module name).
        kind: one of :data:`CURVATURE_KINDS`.
        dense: the explicit matrix, shape ``(N, N)``, or ``None`` for factor form.
        factor: ``F``, shape ``(M, N)``, or ``None`` for dense form; the matrix is
            ``scale · Fᵀ F``.
        scale: the scalar in front of ``Fᵀ F`` (``1/B`` for a mean over B samples).
    """

    name: str
    kind: str
    dense: torch.Tensor | None = None
    factor: torch.Tensor | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in CURVATURE_KINDS:
            raise ValueError(f"kind must be one of {CURVATURE_KINDS}, got {self.kind!r}")
        if (self.dense is None) == (self.factor is None):
            raise ValueError("exactly one of dense= and factor= must be given")
        if self.dense is not None and (
            self.dense.ndim != 2 or self.dense.shape[0] != self.dense.shape[1]
        ):
            raise ValueError(f"dense must be square (N, N), got shape {tuple(self.dense.shape)}")
        if self.factor is not None and self.factor.ndim != 2:
            raise ValueError(f"factor must be (M, N), got shape {tuple(self.factor.shape)}")

    @property
    def n(self) -> int:
        """Block size N (number of parameters in the block)."""
        source = self.dense if self.dense is not None else self.factor
        return int(source.shape[-1])

    @property
    def rank_bound(self) -> int | None:
        """Upper bound on the rank (M for factor form), ``None`` for dense blocks."""
        return None if self.factor is None else int(self.factor.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return (self.dense if self.dense is not None else self.factor).dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``H v`` for ``v`` of shape ``(N,)`` or ``(N, k)``."""
        if self.dense is not None:
            return self.dense @ v
        return self.scale * (self.factor.T @ (self.factor @ v))

    def diagonal(self) -> torch.Tensor:
        """The diagonal of the block, shape ``(N,)``, without forming the matrix."""
        if self.dense is not None:
            return self.dense.diagonal().clone()
        return self.scale * (self.factor * self.factor).sum(dim=0)

    def max_abs_entry(self) -> float:
        """``max |H_ij|``. For factor form (PSD) this is the largest diagonal entry,
        since ``|H_ij| ≤ √(H_ii H_jj)`` for any PSD matrix."""
        if self.dense is not None:
            return float(self.dense.abs().max())
        return float(self.diagonal().max())

    def to_dense(self) -> torch.Tensor:
        """The explicit ``(N, N)`` matrix (forms it for factor blocks)."""
        if self.dense is not None:
            return self.dense
        return self.scale * (self.factor.T @ self.factor)


def dense_block_bytes(n: int, dtype: torch.dtype = torch.float64) -> int:
    """Memory in bytes of one dense N×N block of ``dtype``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n * n * torch.empty((), dtype=dtype).element_size()


# --------------------------------------------------------------------------------------------
# Parameter blocks
# --------------------------------------------------------------------------------------------


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


def blocks_from_params(
    params: Iterable[torch.Tensor], names: Sequence[str] | None = None
) -> list[ParamBlock]:
    """One block per tensor, skipping tensors with ``requires_grad=False``.

    ``names`` (same length as ``params``) names the blocks; default ``param0, param1, …`` (the
    index in ``params``, counting skipped tensors too).
    """
    params = list(params)
    if names is not None:
        names = list(names)
        if len(names) != len(params):
            raise ValueError(f"got {len(names)} names for {len(params)} parameters")
    seen: set[int] = set()
    blocks = []
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params[{i}] is {type(p).__name__}, not a tensor")
        if not p.requires_grad:
            continue
        if id(p) in seen:
            raise ValueError(f"parameter {i} appears more than once")
        seen.add(id(p))
        blocks.append(ParamBlock(names[i] if names is not None else f"param{i}", (p,)))
    return blocks


BLOCK_GROUPINGS = ("tensor", "module")


def blocks_from_module(module: torch.nn.Module, grouping: str = "tensor") -> list[ParamBlock]:
    """Parameter blocks of a module's trainable parameters (``requires_grad=True`` only).

    ``grouping="tensor"``: one block per parameter tensor, named as in ``named_parameters()``.
    ``grouping="module"``: one block per (sub)module holding the direct parameters of that module
    (e.g. a Linear's weight and bias together), named as in ``named_modules()`` (``"<root>"`` for
    the top module's own parameters). Shared (tied) parameters belong to the first module that
    holds them. Blocks come in ``module.parameters()`` order.
    """
    if grouping not in BLOCK_GROUPINGS:
        raise ValueError(f"grouping must be one of {BLOCK_GROUPINGS}, got {grouping!r}")
    if grouping == "tensor":
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        return [ParamBlock(n, (p,)) for n, p in named]
    seen: set[int] = set()
    blocks = []
    for mod_name, mod in module.named_modules():
        own = []
        for p in mod.parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                own.append(p)
        if own:
            blocks.append(ParamBlock(mod_name or "<root>", tuple(own)))
    return blocks


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


# --------------------------------------------------------------------------------------------
# Configuration and memory estimates
# --------------------------------------------------------------------------------------------

#: Default chunk when ``chunk_size`` is not given: at most this many rows, and at most
#: :data:`DEFAULT_CHUNK_BYTES` of output rows. Each batched backward also holds one copy of the
#: graph's intermediates per row, so larger chunks cost memory (on CPU, chunks of 32–512 rows of
#: a 3072-parameter block ran at the same speed while peak memory grew ~4× from 128 to 3072 rows).
DEFAULT_CHUNK_ROWS = 128
DEFAULT_CHUNK_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class CurvatureConfig:
    """How to build curvature blocks.

    Attributes:
        kind: ``"hessian"`` (exact diagonal blocks, dense), ``"ggn"`` (generalized Gauss-Newton,
            factor form, needs the outputs) or ``"fisher"`` (empirical Fisher, factor form).
        max_block_bytes: memory budget for any one block as stored: a dense N×N matrix or a
            factor ``F``. Checked *before* building (:func:`estimate_block_bytes`).
        chunk_size: rows (Hessian rows, per-sample gradients, GGN factor rows) computed per
            batched backward pass. ``None``: up to :data:`DEFAULT_CHUNK_ROWS` rows, fewer if the
            rows would exceed :data:`DEFAULT_CHUNK_BYTES` (at least 1). The batched backward holds
            ``chunk_size`` copies of the graph's intermediates, so lower it for big activations
            (raise it on a GPU for speed). Results do not depend on it.
        dtype: floating dtype the blocks and gradients are returned in (computation runs in the
            model's dtype, the results are cast).
    """

    kind: str = "fisher"
    max_block_bytes: int = 2 * 1024**3
    chunk_size: int | None = None
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        if self.kind not in CURVATURE_KINDS:
            raise ValueError(f"curvature kind must be one of {CURVATURE_KINDS}, got {self.kind!r}")
        if (
            isinstance(self.max_block_bytes, bool)
            or not isinstance(self.max_block_bytes, int)
            or self.max_block_bytes <= 0
        ):
            raise ValueError(
                f"max_block_bytes must be a positive int (bytes), got {self.max_block_bytes!r}"
            )
        if self.chunk_size is not None and (
            isinstance(self.chunk_size, bool)
            or not isinstance(self.chunk_size, int)
            or self.chunk_size <= 0
        ):
            raise ValueError(f"chunk_size must be None or a positive int, got {self.chunk_size!r}")
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {self.dtype!r}")


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def estimate_block_bytes(
    kind: str,
    n: int,
    num_samples: int,
    num_outputs: int = 1,
    dtype: torch.dtype = torch.float64,
) -> int:
    """Memory in bytes of one block as it will be stored, before building it.

    hessian: ``N²`` elements (dense); fisher: ``S·N`` (factor, one row per sample);
    ggn: ``S·C·N`` (factor, one row per sample and output). ``num_samples`` is ignored for the
    Hessian.
    """
    if kind not in CURVATURE_KINDS:
        raise ValueError(f"curvature kind must be one of {CURVATURE_KINDS}, got {kind!r}")
    for label, value in (("n", n), ("num_samples", num_samples), ("num_outputs", num_outputs)):
        if value < 0:
            raise ValueError(f"{label} must be >= 0, got {value}")
    if kind == "hessian":
        return dense_block_bytes(n, dtype)
    rows = num_samples if kind == "fisher" else num_samples * num_outputs
    return rows * n * _element_size(dtype)


def format_bytes(num_bytes: float) -> str:
    """Human-readable size with binary units (``'4.1 GiB'``)."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _budget_message(
    block: ParamBlock, kind: str, needed: int, s: int, c: int, config: CurvatureConfig
) -> str:
    n, dt = block.numel, _dtype_name(config.dtype)
    over = f"over the {format_bytes(config.max_block_bytes)} budget (max_block_bytes)"
    if kind == "hessian":
        return (
            f"block {block.name!r} needs {format_bytes(needed)} as a dense {n}×{n} {dt} matrix, "
            f"{over}; use curvature='fisher' or 'ggn' (factor form), smaller blocks, "
            f"or a larger budget"
        )
    if kind == "fisher":
        return (
            f"block {block.name!r} needs {format_bytes(needed)} as a {s}×{n} {dt} factor "
            f"(empirical Fisher, one row per sample), {over}; use fewer samples per step "
            f"or a larger budget"
        )
    return (
        f"block {block.name!r} needs {format_bytes(needed)} as a {s * c}×{n} {dt} factor "
        f"(GGN, {s} samples × {c} outputs), {over}; use curvature='fisher' ({s} rows), "
        f"fewer samples per step or a larger budget"
    )


# --------------------------------------------------------------------------------------------
# Batched vector-Jacobian products
# --------------------------------------------------------------------------------------------


class _BatchedVJP:
    """``autograd.grad`` with ``is_grads_batched=True`` (vmap over the backward pass), falling
    back to one backward pass per row (with a warning) if the graph has an op vmap can't batch.
    The graph is always retained."""

    def __init__(self) -> None:
        self.batched = True

    def __call__(
        self,
        outputs: torch.Tensor,
        inputs: Sequence[torch.Tensor],
        grad_outputs: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Return, for each input, a tensor ``(k, *input.shape)`` whose row ``i`` is the VJP
        ``(∂outputs/∂input)ᵀ grad_outputs[i]``; zeros where ``outputs`` doesn't depend on it."""
        k = grad_outputs.shape[0]
        if self.batched:
            try:
                res = torch.autograd.grad(
                    outputs,
                    inputs,
                    grad_outputs=grad_outputs,
                    retain_graph=True,
                    allow_unused=True,
                    is_grads_batched=True,
                )
            except RuntimeError as exc:
                warnings.warn(
                    "batched backward (is_grads_batched) failed, falling back to one backward "
                    f"pass per row (slower): {str(exc).splitlines()[0] if str(exc) else exc!r}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.batched = False
        if not self.batched:
            rows = [
                torch.autograd.grad(
                    outputs,
                    inputs,
                    grad_outputs=grad_outputs[i],
                    retain_graph=True,
                    allow_unused=True,
                )
                for i in range(k)
            ]
            res = []
            for j, inp in enumerate(inputs):
                if all(r[j] is None for r in rows):
                    res.append(None)
                else:
                    res.append(
                        torch.stack([torch.zeros_like(inp) if r[j] is None else r[j] for r in rows])
                    )
        return [
            inp.new_zeros((k, *inp.shape)) if r is None else r
            for r, inp in zip(res, inputs, strict=True)
        ]


def _chunk_rows(config: CurvatureConfig, rows: int, row_bytes: int) -> int:
    if config.chunk_size is not None:
        return max(1, min(config.chunk_size, rows))
    return max(1, min(rows, DEFAULT_CHUNK_ROWS, DEFAULT_CHUNK_BYTES // max(1, row_bytes)))


def _store_rows(
    rows: Sequence[torch.Tensor],
    todo: Sequence[ParamBlock],
    factors: dict[int, torch.Tensor],
    r0: int,
    r1: int,
    dtype: torch.dtype,
) -> None:
    """Write batched gradients (one tensor per parameter, in block order) into factor rows."""
    pos = 0
    for b in todo:
        piece = rows[pos : pos + len(b.params)]
        pos += len(b.params)
        factors[id(b)][r0:r1] = _flat_rows(piece, r1 - r0).detach().to(dtype)


def _flat_rows(pieces: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Concatenate ``(k, *shape)`` tensors into ``(k, N)`` rows (block flattening order)."""
    return torch.cat([t.reshape(k, -1) for t in pieces], dim=1)


# --------------------------------------------------------------------------------------------
# Building curvature
# --------------------------------------------------------------------------------------------


@dataclass
class CurvatureResult:
    """What :func:`compute_curvature` returns.

    Attributes:
        blocks: one :class:`CurvatureBlock` per parameter block (same order), or ``None`` for a
            block skipped as over budget (``skip_over_budget=True``).
        grads: per block, the gradient of the mean loss, flat ``(N,)`` in the block flattening
            order (the order of ``p.grad.reshape(-1)``), in ``config.dtype``. Always present,
            also for skipped blocks.
        loss: the mean loss (detached scalar, in the losses' dtype).
        skipped: ``{block name: reason}`` for blocks returned as ``None``.
        kind: the curvature kind.
        num_samples: S, the number of per-sample losses.
        num_outputs: C for the GGN (outputs per sample), else ``None``.
    """

    blocks: list[CurvatureBlock | None]
    grads: list[torch.Tensor]
    loss: torch.Tensor
    skipped: dict[str, str] = field(default_factory=dict)
    kind: str = "fisher"
    num_samples: int = 0
    num_outputs: int | None = None


def evaluate_closure(
    closure: Callable[[], object],
) -> tuple[torch.Tensor, torch.Tensor | None]:
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


def _validate_inputs(
    losses: torch.Tensor,
    blocks: Sequence[ParamBlock],
    kind: str,
    outputs: torch.Tensor | None,
) -> tuple[int, int | None]:
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
    blocks = list(blocks)
    if not blocks:
        raise ValueError("no parameter blocks given")
    for b in blocks:
        if not isinstance(b, ParamBlock):
            raise TypeError(f"blocks must be ParamBlock instances, got {type(b).__name__}")
    ids = [id(p) for b in blocks for p in b.params]
    if len(set(ids)) != len(ids):
        raise ValueError("a parameter appears in more than one block")
    if kind in ("fisher", "ggn") and losses.ndim != 1:
        raise ValueError(
            f"curvature={kind!r} needs per-sample losses of shape (S,), got shape "
            f"{tuple(losses.shape)} (flatten per-token losses to (B·T,); do not reduce them)"
        )
    s = losses.numel()
    if kind != "ggn":
        return s, None
    if outputs is None:
        raise ValueError(
            "curvature='ggn' needs the model outputs: the closure must return (losses, outputs)"
        )
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"outputs must be a tensor, got {type(outputs).__name__}")
    if not outputs.requires_grad:
        raise ValueError(
            "outputs do not require grad; return the model outputs, not a detached copy"
        )
    if outputs.numel() == 0 or outputs.numel() % s != 0:
        raise ValueError(
            f"outputs of shape {tuple(outputs.shape)} do not reshape to (S, C) with S={s} "
            "per-sample losses"
        )
    return s, outputs.numel() // s


def compute_curvature(
    losses: torch.Tensor,
    blocks: Sequence[ParamBlock],
    config: CurvatureConfig | None = None,
    outputs: torch.Tensor | None = None,
    *,
    skip_over_budget: bool = False,
) -> CurvatureResult:
    """Curvature blocks and mean-loss gradients for ``blocks`` from a built autograd graph.

    Args:
        losses: per-sample losses ``(S,)`` computed from the parameters (objective: the mean).
            For ``kind="hessian"`` any shape (including a scalar) is accepted.
        blocks: the parameter blocks; a parameter may belong to at most one block. Parameters
            the losses don't depend on get zero gradient and zero curvature.
        config: :class:`CurvatureConfig` (default: empirical Fisher).
        outputs: for ``kind="ggn"``, the model outputs; they must reshape to ``(S, C)`` with the
            loss of sample ``s`` depending only on row ``s``.
        skip_over_budget: if ``False`` (default) a block over ``config.max_block_bytes`` raises
            :class:`CurvatureBudgetError`; if ``True`` it comes back as ``None`` and the reason
            is recorded in ``result.skipped`` (its gradient is still returned).

    Kinds:
        * ``"hessian"``: the exact diagonal blocks ``∂²L/∂θ_b²`` of ``L = mean(losses)`` (no
          cross-block terms), dense, built row-chunk by row-chunk from batched Hessian-vector
          products (double backward), symmetrized ``(H + Hᵀ)/2``.
        * ``"fisher"``: the empirical Fisher ``(1/S)·Σ_s g_s g_sᵀ`` with ``g_s = ∇ losses[s]``,
          in factor form (``factor`` = the ``S×N`` per-sample gradients, ``scale = 1/S``). The
          ``g_s`` are *per-sample* gradients only if the model has no batch-coupling layers (e.g.
          BatchNorm in training mode); otherwise they are the gradients of each loss term.
        * ``"ggn"``: ``(1/S)·Σ_s J_sᵀ H_s J_s``, ``J_s = ∂outputs_s/∂θ``,
          ``H_s = ∂²losses[s]/∂outputs_s²``, in factor form with ``S·C`` rows
          ``J_sᵀ R_s[:, c]`` (row ``s·C + c``), ``R_s`` the symmetric PSD square root of
          ``H_s``. Negative eigenvalues of ``H_s`` (a loss non-convex in the outputs) are
          clamped to 0 so the result stays PSD. The loss Hessians are found with ``C`` batched
          double-backward passes through the loss part of the graph only.

    Parameter ``.grad`` fields are not touched and the graph is retained; the caller need not
    have called ``backward`` and may still call it afterwards.
    """
    config = config or CurvatureConfig()
    kind = config.kind
    blocks = list(blocks)
    s, c = _validate_inputs(losses, blocks, kind, outputs)

    built: list[bool] = []
    skipped: dict[str, str] = {}
    for b in blocks:
        needed = estimate_block_bytes(kind, b.numel, s, c or 1, config.dtype)
        if needed > config.max_block_bytes:
            msg = _budget_message(b, kind, needed, s, c or 1, config)
            if not skip_over_budget:
                raise CurvatureBudgetError(msg)
            skipped[b.name] = msg
            built.append(False)
        else:
            built.append(True)

    all_params = [p for b in blocks for p in b.params]
    with torch.enable_grad():
        loss = losses.mean()
        create_graph = kind == "hessian" and any(built)
        g_all = torch.autograd.grad(
            loss, all_params, retain_graph=True, create_graph=create_graph, allow_unused=True
        )
        g_all = [
            torch.zeros_like(p) if g is None else g for g, p in zip(g_all, all_params, strict=True)
        ]
        grads = []
        pos = 0
        g_blocks = []
        for b in blocks:
            g_b = g_all[pos : pos + len(b.params)]
            pos += len(b.params)
            g_blocks.append(g_b)
            grads.append(flatten_block([g.detach() for g in g_b]).to(config.dtype))

        if kind == "hessian":
            curv = [
                _hessian_block(b, g_b, config) if ok else None
                for b, g_b, ok in zip(blocks, g_blocks, built, strict=True)
            ]
        elif kind == "fisher":
            curv = _fisher_blocks(losses, blocks, built, config)
        else:
            curv = _ggn_blocks(losses, outputs, blocks, built, s, c, config)
    return CurvatureResult(
        blocks=curv,
        grads=grads,
        loss=loss.detach(),
        skipped=skipped,
        kind=kind,
        num_samples=s,
        num_outputs=c,
    )


def _symmetrize_(h: torch.Tensor, tile: int = 1024) -> torch.Tensor:
    """In-place ``h ← (h + hᵀ)/2`` tile by tile (no second N×N buffer)."""
    n = h.shape[0]
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(i0, n, tile):
            j1 = min(n, j0 + tile)
            avg = (h[i0:i1, j0:j1] + h[j0:j1, i0:i1].T) / 2
            h[i0:i1, j0:j1] = avg
            h[j0:j1, i0:i1] = avg.T
    return h


def _hessian_block(
    block: ParamBlock, g_b: Sequence[torch.Tensor], config: CurvatureConfig
) -> CurvatureBlock:
    n = block.numel
    ref = block.params[0]
    h = torch.zeros((n, n), dtype=config.dtype, device=ref.device)
    g_flat = flatten_block(g_b)
    if g_flat.requires_grad:  # otherwise the loss is at most linear in the block: H = 0
        vjp = _BatchedVJP()
        k = _chunk_rows(config, n, n * g_flat.element_size())
        for r0 in range(0, n, k):
            r1 = min(n, r0 + k)
            eye = torch.zeros((r1 - r0, n), dtype=g_flat.dtype, device=g_flat.device)
            idx = torch.arange(r0, r1, device=eye.device)
            eye[idx - r0, idx] = 1
            rows = vjp(g_flat, block.params, eye)
            h[r0:r1] = _flat_rows(rows, r1 - r0).detach().to(config.dtype)
        _symmetrize_(h)
    return CurvatureBlock(block.name, "hessian", dense=h)


def _fisher_blocks(
    losses: torch.Tensor,
    blocks: Sequence[ParamBlock],
    built: Sequence[bool],
    config: CurvatureConfig,
) -> list[CurvatureBlock | None]:
    s = losses.numel()
    todo = [b for b, ok in zip(blocks, built, strict=True) if ok]
    if not todo:
        return [None] * len(blocks)
    factors = {
        id(b): torch.empty((s, b.numel), dtype=config.dtype, device=b.params[0].device)
        for b in todo
    }
    fast = _linear_per_sample_rows(losses, todo, factors, config)
    todo = [b for b in todo if id(b) not in fast]
    if not todo:
        return [
            CurvatureBlock(b.name, "fisher", factor=factors[id(b)], scale=1.0 / s) if ok else None
            for b, ok in zip(blocks, built, strict=True)
        ]
    params = [p for b in todo for p in b.params]
    n_total = sum(b.numel for b in todo)
    vjp = _BatchedVJP()
    k = _chunk_rows(config, s, n_total * losses.element_size())
    for s0 in range(0, s, k):
        s1 = min(s, s0 + k)
        seeds = torch.zeros((s1 - s0, s), dtype=losses.dtype, device=losses.device)
        idx = torch.arange(s0, s1, device=seeds.device)
        seeds[idx - s0, idx] = 1
        _store_rows(vjp(losses, params, seeds), todo, factors, s0, s1, config.dtype)
    return [
        CurvatureBlock(b.name, "fisher", factor=factors[id(b)], scale=1.0 / s) if ok else None
        for b, ok in zip(blocks, built, strict=True)
    ]


# Fast path for per-sample gradients of linear layers (performance only; same result).
#
# The generic path above finds row s of the factor with a batched backward seeded by the one-hot
# vector e_s: each of the S rows costs a backward pass over the *whole* batch, O(S²) in total
# (minutes for S = 2048 and a 784-input MLP). For a parameter W used only as the matrix of
# ``z = x Wᵀ (+ b)`` (``F.linear`` on 2-D inputs: ``addmm``/``mm`` nodes) with one row of ``z`` per
# loss, the gradient of loss s is the outer product ``δ_s x_sᵀ`` (and ``δ_s`` for the bias), where
# ``δ = ∂(Σ losses)/∂z`` comes from ONE backward pass, provided loss s depends only on row s
# (no coupling across samples). The graph is inspected for exactly these patterns; every other
# parameter takes the generic path. Because coupling across samples (BatchNorm in training mode,
# a batch-normalized loss) cannot be seen in the graph's structure, a few rows of the fast result
# are checked against the generic computation; on a mismatch the fast result is discarded.

_FAST_CHECK_ROWS = 3


def _graph_nodes(root: object) -> list[object]:
    """All autograd nodes reachable from ``root`` (each once)."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(nf for nf, _ in node.next_functions if nf is not None)
    return list(seen.values())


def _accumulated_param(node: object, params: dict[int, torch.Tensor]) -> torch.Tensor | None:
    if type(node).__name__ != "AccumulateGrad":
        return None
    var = getattr(node, "variable", None)
    return var if var is not None and id(var) in params else None


def _linear_uses(
    losses: torch.Tensor, params: dict[int, torch.Tensor]
) -> tuple[dict[int, list[tuple[object, str]]], set[int]]:
    """For each parameter, its uses as ``(addmm/mm node, role)`` with role ``"wt"`` (used as
    ``Wᵀ``: ``z = x Wᵀ``), ``"w"`` (``z = x W``) or ``"bias"``; and the ids of parameters with
    any other use (those cannot take the fast path)."""
    uses: dict[int, list[tuple[object, str]]] = {}
    other: set[int] = set()
    for node in _graph_nodes(losses.grad_fn):
        kind = type(node).__name__
        if kind == "TBackward0":
            continue  # judged at its parents: every edge into a ``Wᵀ`` node is examined there
        for pos, (child, _) in enumerate(node.next_functions):
            if child is None:
                continue
            direct = _accumulated_param(child, params)
            via_t = None
            if type(child).__name__ == "TBackward0":
                (grand, _), = child.next_functions or ((None, 0),)
                via_t = _accumulated_param(grand, params) if grand is not None else None
            if direct is None and via_t is None:
                continue
            role = None
            if kind == "AddmmBackward0":
                role = {0: "bias", 2: "wt" if via_t is not None else "w"}.get(pos)
                if role == "bias" and direct is None:
                    role = None
            elif kind == "MmBackward0" and pos == 1:
                role = "wt" if via_t is not None else "w"
            target = direct if direct is not None else via_t
            if role is None:
                other.add(id(target))
            else:
                uses.setdefault(id(target), []).append((node, role))
    return uses, other


def _linear_inputs(node: object, s: int) -> torch.Tensor | None:
    """The saved 2-D input ``x`` (S·T×in) of an addmm/mm node with unit scaling, else ``None``.

    ``T > 1`` when the layer was applied to sequences (S, T, in): torch flattens them to S·T rows
    in sample-major order, and the per-sample gradient then sums over the T positions.
    """
    kind = type(node).__name__
    try:
        if kind == "AddmmBackward0":
            if float(node._saved_alpha) != 1.0 or float(node._saved_beta) != 1.0:
                return None
            x = node._saved_mat1
        else:
            x = node._saved_self
    except (AttributeError, RuntimeError, TypeError):
        return None
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] % s != 0:
        return None
    return x.detach()


def _linear_per_sample_rows(
    losses: torch.Tensor,
    todo: Sequence[ParamBlock],
    factors: dict[int, torch.Tensor],
    config: CurvatureConfig,
) -> set[int]:
    """Fill the factors of blocks whose parameters are all plain linear-layer parameters with the
    per-sample gradients (fast path, see above); return the ids of the blocks filled."""
    s = losses.numel()
    if losses.grad_fn is None or s < 2:
        return set()
    params = {id(p): p for b in todo for p in b.params}
    try:
        uses, other = _linear_uses(losses, params)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return set()
    nodes: dict[int, object] = {}
    inputs: dict[int, torch.Tensor] = {}
    for pid, plist in uses.items():
        for node, _ in plist:
            if id(node) not in inputs:
                x = _linear_inputs(node, s)
                if x is None:
                    other.add(pid)
                    continue
                inputs[id(node)] = x
                nodes[id(node)] = node
    eligible = [
        b for b in todo if all(id(p) in uses and id(p) not in other for p in b.params)
    ]
    if not eligible:
        return set()
    # δ = ∂(Σ_s losses[s]) / ∂z for every linear node the eligible blocks use: one backward pass.
    wanted = {id(node) for b in eligible for p in b.params for node, _ in uses[id(p)]}
    deltas: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(key: int) -> Callable[[tuple[torch.Tensor | None, ...]], None]:
        def hook(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
            if grad_outputs and grad_outputs[0] is not None:
                deltas[key] = grad_outputs[0].detach()

        return hook

    eligible_params = [p for b in eligible for p in b.params]
    try:
        for key in wanted:
            handles.append(nodes[key].register_prehook(make_hook(key)))
        torch.autograd.grad(
            losses, eligible_params, grad_outputs=torch.ones_like(losses),
            retain_graph=True, allow_unused=True,
        )
    finally:
        for h in handles:
            h.remove()
    for key in wanted:
        d = deltas.get(key)
        if d is None or d.ndim != 2 or d.shape[0] != inputs[key].shape[0]:
            return set()

    def fill(p: torch.Tensor, dest: torch.Tensor, r0: int, r1: int) -> None:
        """Write the per-sample gradients of ``p`` for samples r0..r1 into ``dest`` (k, numel).

        With T positions per sample (sequence inputs), rows r0·T..r1·T of δ and x belong to the
        samples, and the gradient of sample s is Σ_t δ_{s,t} x_{s,t}ᵀ in the parameter's own
        (out, in) order — the layout ``p.grad`` uses, so no index permutation can creep in.
        """
        first = True
        k = r1 - r0
        for node, role in uses[id(p)]:
            t = inputs[id(node)].shape[0] // s
            d = deltas[id(node)][r0 * t : r1 * t].to(config.dtype).reshape(k, t, -1)
            if role == "bias":
                piece = d.sum(dim=1)
            else:
                x = inputs[id(node)][r0 * t : r1 * t].to(config.dtype).reshape(k, t, -1)
                a, c = (d, x) if role == "wt" else (x, d)
                piece = torch.bmm(a.transpose(1, 2), c).reshape(k, -1)
            if piece.shape[1] != p.numel():
                raise ValueError("shape mismatch")
            if first:
                dest.copy_(piece)
            else:
                dest.add_(piece)
            first = False

    row_bytes = max(b.numel for b in eligible) * _element_size(config.dtype)
    k = max(1, min(s, DEFAULT_CHUNK_BYTES // max(1, row_bytes)))
    try:
        for b in eligible:
            factor = factors[id(b)]
            for r0 in range(0, s, k):
                r1 = min(s, r0 + k)
                col = 0
                for p in b.params:
                    fill(p, factor[r0:r1, col : col + p.numel()], r0, r1)
                    col += p.numel()
    except ValueError:
        return set()
    # Check a few rows against the generic computation (detects coupling across samples).
    check = sorted({0, s // 2, s - 1})[:_FAST_CHECK_ROWS]
    seeds = torch.zeros((len(check), s), dtype=losses.dtype, device=losses.device)
    seeds[torch.arange(len(check)), torch.tensor(check)] = 1
    exact = _BatchedVJP()(losses, eligible_params, seeds)
    tol = max(1e-8, 1e3 * torch.finfo(losses.dtype).eps)
    refs, pos = {}, 0
    for b in eligible:
        piece = exact[pos : pos + len(b.params)]
        pos += len(b.params)
        refs[id(b)] = _flat_rows(piece, len(check)).detach().to(config.dtype)
    # Errors are judged against the largest per-sample gradient of all checked blocks, so that a
    # block whose gradient is pure round-off (e.g. an attention key bias, to which softmax is
    # invariant) is not rejected for disagreeing in its noise.
    scale = max(float(torch.linalg.vector_norm(r, dim=1).max()) for r in refs.values())
    passed = set()
    for b in eligible:
        err = torch.linalg.vector_norm(factors[id(b)][check] - refs[id(b)], dim=1)
        if not bool((err > tol * scale + torch.finfo(config.dtype).tiny).any()):
            passed.add(id(b))
    return passed


def _loss_hessian_sqrt(
    losses: torch.Tensor, outputs: torch.Tensor, s: int, c: int, config: CurvatureConfig
) -> torch.Tensor:
    """Symmetric PSD square roots ``R_s`` (shape ``(S, C, C)``) of the per-sample loss Hessians
    with respect to the outputs; negative eigenvalues are clamped to 0."""
    (d,) = torch.autograd.grad(
        losses.sum(), outputs, create_graph=True, retain_graph=True, allow_unused=True
    )
    if d is None:
        raise ValueError("the losses do not depend on the outputs returned for the GGN")
    if not d.requires_grad:  # loss linear in the outputs
        return torch.zeros((s, c, c), dtype=config.dtype, device=outputs.device)
    seeds = torch.zeros((c, s, c), dtype=d.dtype, device=d.device)
    idx = torch.arange(c, device=d.device)
    seeds[idx, :, idx] = 1
    (hrows,) = _BatchedVJP()(d, [outputs], seeds.reshape(c, *outputs.shape))
    # hrows[j, s, :] = ∂(Σ_s' d[s', j])/∂o_s = H_s[j, :]
    h = hrows.detach().reshape(c, s, c).permute(1, 0, 2).to(config.dtype)
    h = (h + h.transpose(1, 2)) / 2
    evals, evecs = torch.linalg.eigh(h)
    root = evals.clamp(min=0).sqrt()
    return (evecs * root.unsqueeze(1)) @ evecs.transpose(1, 2)


def _ggn_blocks(
    losses: torch.Tensor,
    outputs: torch.Tensor,
    blocks: Sequence[ParamBlock],
    built: Sequence[bool],
    s: int,
    c: int,
    config: CurvatureConfig,
) -> list[CurvatureBlock | None]:
    todo = [b for b, ok in zip(blocks, built, strict=True) if ok]
    if not todo:
        return [None] * len(blocks)
    sqrt_h = _loss_hessian_sqrt(losses, outputs, s, c, config)
    params = [p for b in todo for p in b.params]
    n_total = sum(b.numel for b in todo)
    m = s * c
    factors = {
        id(b): torch.empty((m, b.numel), dtype=config.dtype, device=b.params[0].device)
        for b in todo
    }
    vjp = _BatchedVJP()
    k = _chunk_rows(config, m, max(n_total, m) * outputs.element_size())
    for r0 in range(0, m, k):
        r1 = min(m, r0 + k)
        r = torch.arange(r0, r1, device=outputs.device)
        seeds = torch.zeros((r1 - r0, s, c), dtype=outputs.dtype, device=outputs.device)
        # row s·C + j of the factor is J_sᵀ R_s[:, j]: seed R_s[:, j] at output row s
        seeds[r - r0, r // c, :] = sqrt_h[r // c, :, r % c].to(outputs.dtype)
        rows = vjp(outputs, params, seeds.reshape(r1 - r0, *outputs.shape))
        _store_rows(rows, todo, factors, r0, r1, config.dtype)
    return [
        CurvatureBlock(b.name, "ggn", factor=factors[id(b)], scale=1.0 / s) if ok else None
        for b, ok in zip(blocks, built, strict=True)
    ]
