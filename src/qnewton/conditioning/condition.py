"""Conditioning (pipeline stage 2): turn a curvature block into the linear system that is solved.

Regularize (``H + λI``), optionally prune to a target row sparsity with a *symmetric* mask, and
repair positive definiteness (docs/method.md §4.6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnewton.conditioning.kronecker import condition_kronecker
from qnewton.conditioning.pruning import prune_symmetric, prune_target, row_sparsity, symmetrized
from qnewton.conditioning.regularization import REG_SCHEMES, regularization_lambda
from qnewton.conditioning.repair import repair_positive_definite
from qnewton.curvature.kronecker import KroneckerBlock
from qnewton.curvature.representation import CurvatureBlock, MatrixFreeBlock, MatrixFreeError
from qnewton.estimation.krylov import spectrum_bounds
from qnewton.system import LinearSystem
from qnewton.validation import check_int, check_nonnegative, check_real


@dataclass(frozen=True)
class ConditioningConfig:
    """How a curvature block becomes the solved matrix.

    Attributes:
        reg_scheme: a name in :data:`REG_SCHEMES` (see :func:`regularization_lambda`).
        reg: regularization strength (finite, ``≥ 0``); meaning depends on ``reg_scheme``.
        prune_ratio: target kept fraction per row in ``(0, 1]``, or ``None``.
        prune_count: target kept entries per row (integer ``≥ 1``, ``≤ N`` checked at use), or
            ``None``. At most one of ``prune_ratio``/``prune_count``.
        shift: an absolute diagonal shift added to the scheme's λ (units of H, ``≥ 0``): the
            step rule's scale-safe damping, so that a block whose own curvature is zero or tiny
            is still damped on the scale of the whole model (docs/method.md §4.12).
        min_eig_fraction: positive-definiteness target, *relative to the matrix scale*:
            repairs ensure ``λ_min(A) ≥ min_eig_fraction · max|A_ij|``, where ``A`` is the
            regularized (and pruned) matrix before repair (``min_eig_fraction`` itself, in
            absolute units, if that matrix is all zero). In ``(0, 1)``. This caps κ at roughly
            ``N / min_eig_fraction`` for the matrices a repair produces.
    """

    reg_scheme: str = "max-entry"
    reg: float = 1e-3
    prune_ratio: float | None = None
    prune_count: int | None = None
    shift: float = 0.0
    min_eig_fraction: float = 1e-8

    def __post_init__(self) -> None:
        REG_SCHEMES.check(self.reg_scheme)
        check_nonnegative("reg", self.reg)
        check_nonnegative("shift", self.shift)
        if self.prune_ratio is not None and self.prune_count is not None:
            raise ValueError("give at most one of prune_ratio and prune_count")
        if self.prune_ratio is not None:
            check_real("prune_ratio", self.prune_ratio, low=0.0, high=1.0, low_open=True)
        if self.prune_count is not None:
            check_int("prune_count", self.prune_count, 1)
        check_real("min_eig_fraction", self.min_eig_fraction, low=0.0, high=1.0, low_open=True,
                   high_open=True)

    @property
    def prunes(self) -> bool:
        return self.prune_ratio is not None or self.prune_count is not None


def _repair_target(scale: float, fraction: float) -> float:
    return fraction * scale if scale > 0.0 else fraction


def condition(block: CurvatureBlock, config: ConditioningConfig) -> LinearSystem:
    """Regularize, optionally prune (symmetrically) and repair a block into a :class:`LinearSystem`.

    Steps:
      1. ``λ = regularization_lambda(block, config.reg_scheme, config.reg)``.
      2. Without pruning:
         * factor-form block (Fisher/GGN, PSD): ``dense=None`` so solvers can use the factor;
           ``d = N``, ``nnz = N²`` (treated as fully dense). ``λ_min(H + λI) ≥ λ`` since ``H`` is
           PSD; if ``λ`` is below the PD target ``t`` a repair shift ``t − λ`` is added (minimal
           when ``H`` is singular, e.g. rank ``M < N``).
         * dense block: ``dense = H + λI``, with true ``d``/``nnz``. Dense Fisher/GGN blocks use
           the same PSD argument; exact-Hessian blocks (possibly indefinite) are tested with
           ``cholesky_ex`` and repaired by :func:`repair_positive_definite` — a Newton step with
           an indefinite matrix is not a descent direction.
      3. With pruning: form ``H + λI`` densely, :func:`prune_symmetric`, then
         :func:`repair_positive_definite`; ``pruned=True`` and the achieved ``d``/``nnz``.

    The PD target is ``t = min_eig_fraction · max|A_ij|`` of the pre-repair matrix (see
    :class:`ConditioningConfig`); repairs of pruned and of exact-Hessian matrices aim for
    ``max(λ, t)``, so that ``λ_min(A) ≥ λ`` as for a PSD block plus ``λI``. ``shift`` is
    ``λ + repair_shift`` for unpruned systems.

    A matrix-free block (:func:`condition_matrix_free`) keeps ``dense=None`` like a factor block;
    pruning it is refused.

    Raises:
        ValueError: ``prune_count > N`` (or other invalid pruning parameters); pruning asked for
            a matrix-free block.
    """
    if not isinstance(block, CurvatureBlock):
        raise ValueError(f"block must be a CurvatureBlock, got {type(block).__name__}")
    if not isinstance(config, ConditioningConfig):
        raise ValueError(f"config must be a ConditioningConfig, got {type(config).__name__}")
    if block.matrix_free:
        return condition_matrix_free(block, config)
    n = block.n
    lam = regularization_lambda(block, config.reg_scheme, config.reg) + config.shift
    fraction = config.min_eig_fraction

    if config.prune_count is not None and config.prune_count > n:
        raise ValueError(
            f"prune_count must be <= N={n} for block {block.name!r}, got {config.prune_count}"
        )
    if config.prunes:
        k = prune_target(n, ratio=config.prune_ratio, count=config.prune_count)
        a = block.to_dense()
        a = a if block.owns_dense else a.clone()
        a.diagonal().add_(lam)
        pruned = prune_symmetric(a, count=k)
        # Restore what H + λI had before pruning for PSD H: λ_min ≥ λ.
        target = max(lam, _repair_target(float(pruned.abs().max()), fraction))
        repaired, s = repair_positive_definite(pruned, target)
        d, nnz = row_sparsity(repaired)
        return LinearSystem(
            block=block,
            shift=lam + s,
            reg=lam,
            repair_shift=s,
            dense=repaired,
            d=d,
            nnz=nnz,
            pruned=True,
            min_eig_bound=target,
        )

    if isinstance(block, KroneckerBlock):  # kept structured, π-split damped
        return condition_kronecker(block, config.reg_scheme, config.reg, fraction)

    if block.factor_rows is not None:
        target = _repair_target(block.max_abs_entry() + lam, fraction)
        s = max(0.0, target - lam)
        return LinearSystem(
            block=block, shift=lam + s, reg=lam, repair_shift=s, dense=None, d=n, nnz=n * n,
            min_eig_bound=lam + s,
        )

    a = symmetrized(block.to_dense(), "block.dense")
    a.diagonal().add_(lam)
    target = _repair_target(float(a.abs().max()), fraction)
    if block.psd:
        s = max(0.0, target - lam)
        if s > 0.0:
            a.diagonal().add_(s)
        bound = lam + s
    else:
        # An indefinite Hessian is shifted until λ_min ≥ λ, as for a PSD block plus λI, so that
        # regularization bounds its step the same way whatever the curvature's sign.
        bound = max(lam, target)
        a, s = repair_positive_definite(a, bound)
    d, nnz = row_sparsity(a)
    return LinearSystem(block=block, shift=lam + s, reg=lam, repair_shift=s, dense=a, d=d, nnz=nnz,
                        min_eig_bound=bound)


def condition_matrix_free(block: MatrixFreeBlock, config: ConditioningConfig) -> LinearSystem:
    """``A = H + (λ + s)·I`` for a matrix-free block, never formed (docs/method.md §4.6).

    * PSD blocks (Fisher, GGN): exactly as a factor block — λ from the scheme (``max-entry`` uses
      the exact largest entry, the largest diagonal entry), and a repair shift ``max(0, t − λ)``
      only; ``λ_min(A) ≥ λ + s`` is guaranteed.
    * Exact Hessian (possibly indefinite): one Lanczos run of 20 products gives an upper bound on
      ``‖H‖₂`` and a lower bound on ``λ_min(H)`` (:func:`~qnewton.estimation.krylov.
      spectrum_bounds`, valid together with probability ≥ 1 − 3e-6). ``max-entry`` then uses the
      norm bound as its max|Hᵢⱼ| figure (an upper bound: λ is at least the paper's), and the
      repair shift ``s = max(0, max(λ, t) − λ − λ_min lower bound)`` gives
      ``λ_min(A) ≥ max(λ, t)`` as for a dense Hessian, with that probability.

    Raises:
        ValueError: pruning asked for (it needs the entries, which are never formed).
        MatrixFreeError: a product failed, or the Lanczos bounds are not finite.
    """
    if config.prunes:
        raise ValueError(
            f"pruning needs the entries of block {block.name!r}, which is matrix-free (its "
            "curvature exceeded max_block_bytes and is never formed): drop prune_ratio/"
            "prune_count, use smaller blocks or raise the memory budget"
        )
    n = block.n
    if not (block.psd and block.has_diagonal) and block.spectral_bounds is None:
        lower, upper = spectrum_bounds(block.matvec, n, dtype=block.dtype, device=block.device)
        if not (math.isfinite(lower) and math.isfinite(upper)):
            raise MatrixFreeError(f"no finite spectral bounds for matrix-free block "
                                  f"{block.name!r}: 20 Lanczos steps are too few for N = {n}")
        block.set_spectral_bounds(lower, upper)
    lam = regularization_lambda(block, config.reg_scheme, config.reg) + config.shift
    target = _repair_target(block.max_abs_entry() + lam, config.min_eig_fraction)
    if block.psd:
        s = max(0.0, target - lam)
        bound = lam + s
    else:
        bound = max(lam, target)
        s = max(0.0, bound - lam - block.spectral_bounds[0])
    return LinearSystem(block=block, shift=lam + s, reg=lam, repair_shift=s, dense=None, d=n,
                        nnz=n * n, min_eig_bound=bound)
