"""Conditioning: turn a curvature block into the linear system that is actually solved.

Stage 2 of the pipeline (DESIGN §3): regularize (``H + λI``), optionally prune to a target row
sparsity with a *symmetric* mask, and repair positive definiteness after pruning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from qnewton.curvature import CurvatureBlock
from qnewton.estimation import check_square_matrix, gershgorin_upper, spectral_norm_upper


@dataclass
class LinearSystem:
    """The system ``A x = b`` handed to a solver, ``A = H' + shift·I``.

    ``H'`` is either the block itself (``dense is None``: ``A = block + shift·I``, which keeps a
    factor-form block usable by Woodbury/CG) or an explicit conditioned matrix (``dense``, which
    already *includes* the shift).

    Attributes:
        block: the curvature block the system was derived from.
        shift: total diagonal shift λ_total = regularization λ + repair shift.
        reg: the regularization λ (absolute units, same units as H).
        repair_shift: extra diagonal shift added to restore positive definiteness after pruning.
        dense: explicit ``(N, N)`` matrix A (shift included), or ``None``.
        d: maximum number of nonzeros in a row of A (sparsity, DESIGN §4.1).
        nnz: number of nonzeros in A.
        pruned: whether magnitude pruning was applied.
    """

    block: CurvatureBlock
    shift: float
    reg: float
    repair_shift: float = 0.0
    dense: torch.Tensor | None = None
    d: int = 0
    nnz: int = 0
    pruned: bool = False
    _gram: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        return self.block.n

    @property
    def factor_form(self) -> bool:
        """True when A = scale·FᵀF + shift·I is available without an explicit matrix."""
        return self.dense is None and self.block.factor is not None

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for ``v`` of shape ``(N,)`` or ``(N, k)``."""
        if self.dense is not None:
            return self.dense @ v
        return self.block.matvec(v) + self.shift * v

    def to_dense(self) -> torch.Tensor:
        """The explicit ``(N, N)`` matrix A."""
        if self.dense is not None:
            return self.dense
        # A factor block's to_dense() is a fresh tensor; a dense block's must not be modified.
        a = self.block.to_dense()
        if self.block.dense is not None:
            a = a.clone()
        a.diagonal().add_(self.shift)
        return a

    def gram(self, cache: bool = True) -> torch.Tensor:
        """``F Fᵀ``, shape ``(M, M)``, of a factor-form system, computed once and cached.

        Its eigenvalues times ``scale`` are the nonzero eigenvalues of the block (an exact κ when
        M is small), and Woodbury's capacitance matrix is built from it, so the scheduler's
        analysis and the solve share one ``2·N·M²``-flop product.
        """
        if not self.factor_form:
            raise ValueError("gram() needs a factor-form system (dense is None, block.factor set)")
        if self._gram is not None:
            return self._gram
        f = self.block.factor
        gram = f @ f.T
        if cache:
            self._gram = gram
        return gram

    @property
    def has_gram(self) -> bool:
        """Whether :meth:`gram` has been computed (and a Woodbury solve will reuse it)."""
        return self._gram is not None

    def max_abs_entry(self) -> float:
        """``max |A_ij|`` without forming A where possible."""
        if self.dense is not None:
            return float(self.dense.abs().max())
        if self.block.factor is not None:
            # A is PSD, so its largest entry is on the diagonal.
            return float((self.block.diagonal() + self.shift).abs().max())
        return float(self.to_dense().abs().max())


# ----------------------------------------------------------------------------- regularization

REG_SCHEMES = ("max-entry", "absolute", "spectral", "none")
_PSD_KINDS = ("fisher", "ggn")


def _check_strength(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return value


def regularization_lambda(
    block: CurvatureBlock,
    scheme: str,
    strength: float,
    spectral_norm: float | None = None,
) -> float:
    """The diagonal shift λ (same units as the block's entries) for ``A = H + λI``.

    Schemes:
      * ``"max-entry"`` (the paper's): ``λ = strength · max|H_ij|``; cheap for factor form (the
        largest entry of a PSD matrix is on the diagonal). For PSD ``H`` this gives
        ``κ ≤ 1 + N/strength`` (``‖H‖₂ ≤ N·max|H_ij|``).
      * ``"absolute"``: ``λ = strength``.
      * ``"spectral"``: ``λ = strength · ‖H‖₂``, giving ``κ ≤ 1 + 1/strength`` for PSD ``H``.
        ``‖H‖₂`` is ``spectral_norm`` if given, else an upper bound on it:
        :func:`qnewton.estimation.spectral_norm_upper` (20 Lanczos matvecs, seed 0, valid with
        probability ≥ 1 − 1e-6; ``psd=True`` for Fisher/GGN blocks), for dense blocks capped by
        the deterministic :func:`qnewton.estimation.gershgorin_upper`. It is an upper bound, so
        λ may exceed ``strength·‖H‖₂`` somewhat (by ≲ 30 % for PSD blocks); the κ guarantee holds.
      * ``"none"``: ``λ = 0``.

    Args:
        block: the curvature block ``H`` (dense or factor form).
        scheme: one of :data:`REG_SCHEMES`.
        strength: the dimensionless (or, for ``"absolute"``, absolute) strength, finite ``≥ 0``.
        spectral_norm: optional known ``‖H‖₂`` (finite, ``≥ 0``), used by ``"spectral"`` only.

    Raises:
        ValueError: unknown ``scheme``; ``strength`` or ``spectral_norm`` negative/non-finite.
    """
    if scheme not in REG_SCHEMES:
        raise ValueError(f"scheme must be one of {REG_SCHEMES}, got {scheme!r}")
    strength = _check_strength(strength, "strength")
    if spectral_norm is not None:
        spectral_norm = _check_strength(spectral_norm, "spectral_norm")
    if scheme == "none" or strength == 0.0:
        return 0.0
    if scheme == "absolute":
        return strength
    if scheme == "max-entry":
        return strength * block.max_abs_entry()
    if spectral_norm is None:
        source = block.dense if block.dense is not None else block.factor
        spectral_norm = spectral_norm_upper(
            block.matvec,
            block.n,
            psd=block.kind in _PSD_KINDS,
            dtype=block.dtype,
            device=source.device,
        )
        if block.dense is not None:
            spectral_norm = min(spectral_norm, gershgorin_upper(block.dense))
    return strength * spectral_norm


# ----------------------------------------------------------------------------- pruning


def _symmetrized(a: torch.Tensor, name: str = "a") -> torch.Tensor:
    """``(a + aᵀ)/2`` — exactly symmetric — after checking ``a`` is symmetric up to rounding."""
    tol = 1e3 * torch.finfo(a.dtype).eps * float(a.abs().max())
    if float((a - a.T).abs().max()) > tol:
        raise ValueError(f"{name} must be symmetric (max |a - a.T| exceeds {tol:.3g})")
    return 0.5 * (a + a.T)


def prune_target(n: int, *, ratio: float | None = None, count: int | None = None) -> int:
    """Target row sparsity k: ``max(1, floor(ratio·N))`` or ``count``.

    Raises:
        ValueError: not exactly one of ``ratio``/``count``; ``ratio`` outside ``(0, 1]``;
            ``count`` not an integer in ``[1, N]``.
    """
    if (ratio is None) == (count is None):
        raise ValueError("exactly one of ratio= and count= must be given")
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
        return max(1, math.floor(ratio * n))
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= n:
        raise ValueError(f"count must be an integer in [1, N={n}], got {count!r}")
    return count


def prune_symmetric(
    a: torch.Tensor, *, ratio: float | None = None, count: int | None = None
) -> torch.Tensor:
    """Magnitude pruning of a symmetric matrix to row sparsity ``d ≤ k`` with a symmetric mask.

    Rule (intersection of row-wise top-k sets): every row ``i`` nominates its diagonal entry plus
    the ``k − 1`` off-diagonal entries of largest ``|a_ij|`` (ties broken by ``torch.topk``). Entry
    ``(i, j)`` is kept iff row ``i`` nominated ``j`` AND row ``j`` nominated ``i``; the diagonal
    is always kept. Consequences, all guaranteed:

      * the mask is symmetric, and the result is *exactly* symmetric (``a`` is first replaced by
        ``(a + aᵀ)/2``, which is bit-for-bit symmetric);
      * every row keeps at most k entries (its kept set ⊆ its nominated set), so the achieved
        ``d ≤ k`` — measure it with :func:`row_sparsity` (it may be well below k: an entry large
        for row i but not for row j is dropped);
      * the diagonal is never pruned.

    (The release's plain row-wise top-k is not symmetric — DESIGN §6. The union rule would be
    symmetric too, but could exceed k.) Pruning can destroy positive definiteness: follow with
    :func:`repair_positive_definite`.

    Args:
        a: symmetric ``(N, N)`` matrix (symmetric up to rounding).
        ratio: target fraction of kept entries per row, in ``(0, 1]``: ``k = max(1, ⌊ratio·N⌋)``.
        count: target entries per row, integer in ``[1, N]``. Exactly one of ``ratio``/``count``.

    Returns:
        A new ``(N, N)`` tensor, same dtype/device, with pruned entries set to 0.
    """
    a = _symmetrized(check_square_matrix(a))
    n = a.shape[0]
    k = prune_target(n, ratio=ratio, count=count)
    nominated = torch.zeros((n, n), dtype=torch.bool, device=a.device)
    if k > 1:
        mag = a.abs()
        mag.fill_diagonal_(-math.inf)  # the diagonal takes one of the k slots separately
        idx = torch.topk(mag, k - 1, dim=1).indices
        nominated.scatter_(1, idx, True)
    keep = nominated & nominated.T
    keep.fill_diagonal_(True)
    return torch.where(keep, a, torch.zeros((), dtype=a.dtype, device=a.device))


def row_sparsity(a: torch.Tensor) -> tuple[int, int]:
    """``(d, nnz)`` of a 2-D tensor: the maximum number of nonzeros in a row, and the total."""
    if not isinstance(a, torch.Tensor) or a.ndim != 2:
        raise ValueError(f"a must be a 2-D tensor, got {getattr(a, 'shape', type(a).__name__)}")
    per_row = (a != 0).sum(dim=1)
    if per_row.numel() == 0:
        return 0, 0
    return int(per_row.max()), int(per_row.sum())


# ----------------------------------------------------------------------------- PD repair


def _is_pd_above(a: torch.Tensor, min_eig: float) -> bool:
    """Cheap test ``λ_min(a) > min_eig`` (numerically) via ``cholesky_ex`` of ``a − min_eig·I``."""
    shifted = a.clone()
    shifted.diagonal().sub_(min_eig)
    return int(torch.linalg.cholesky_ex(shifted).info) == 0


def repair_positive_definite(a: torch.Tensor, min_eig: float) -> tuple[torch.Tensor, float]:
    """Smallest diagonal shift making a symmetric matrix positive definite: ``A + s·I``.

    Method: if ``cholesky_ex(A − min_eig·I)`` succeeds, ``λ_min(A) ≥ min_eig`` already and
    ``s = 0``. Otherwise ``s = min_eig − λ_min(A)`` from ``eigvalsh`` (the exact minimal shift),
    plus a rounding margin ``δ = 8·N·eps·max|A|`` (doubled until the Cholesky test of
    ``A + sI − min_eig·I`` passes), so ``s`` exceeds the minimal shift only by rounding-level
    amounts while ``λ_min(A + sI) ≥ min_eig`` holds as computed.

    Args:
        a: symmetric ``(N, N)`` matrix (symmetric up to rounding; symmetrized first).
        min_eig: target smallest eigenvalue, finite and ``> 0``.

    Returns:
        ``(A + s·I, s)``: a new tensor and the shift ``s ≥ 0`` (float, units of ``A``).

    Raises:
        ValueError: ``a`` not a finite symmetric square matrix; ``min_eig`` not finite ``> 0``.
    """
    a = _symmetrized(check_square_matrix(a))
    if isinstance(min_eig, bool) or not isinstance(min_eig, int | float):
        raise ValueError(f"min_eig must be a finite number > 0, got {min_eig!r}")
    min_eig = float(min_eig)
    if not math.isfinite(min_eig) or min_eig <= 0.0:
        raise ValueError(f"min_eig must be finite and > 0, got {min_eig!r}")
    if _is_pd_above(a, min_eig):
        return a, 0.0
    n = a.shape[0]
    lam_min = float(torch.linalg.eigvalsh(a)[0])
    margin = 8.0 * n * torch.finfo(a.dtype).eps * max(float(a.abs().max()), min_eig)
    shift = max(0.0, min_eig - lam_min)
    for _ in range(60):
        candidate = shift + margin
        out = a.clone()
        out.diagonal().add_(candidate)
        if _is_pd_above(out, min_eig):
            return out, candidate
        margin *= 2.0
    raise RuntimeError("repair_positive_definite: could not reach the target (non-finite input?)")


# ----------------------------------------------------------------------------- conditioning


@dataclass(frozen=True)
class ConditioningConfig:
    """How a curvature block becomes the solved matrix.

    Attributes:
        reg_scheme: one of :data:`REG_SCHEMES` (see :func:`regularization_lambda`).
        reg: regularization strength (finite, ``≥ 0``); meaning depends on ``reg_scheme``.
        prune_ratio: target kept fraction per row in ``(0, 1]``, or ``None``.
        prune_count: target kept entries per row (integer ``≥ 1``, ``≤ N`` checked at use), or
            ``None``. At most one of ``prune_ratio``/``prune_count``.
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
    min_eig_fraction: float = 1e-8

    def __post_init__(self) -> None:
        if self.reg_scheme not in REG_SCHEMES:
            raise ValueError(f"reg_scheme must be one of {REG_SCHEMES}, got {self.reg_scheme!r}")
        _check_strength(self.reg, "reg")
        if self.prune_ratio is not None and self.prune_count is not None:
            raise ValueError("give at most one of prune_ratio and prune_count")
        if self.prune_ratio is not None:
            r = self.prune_ratio
            if isinstance(r, bool) or not isinstance(r, int | float) or not 0.0 < r <= 1.0:
                raise ValueError(f"prune_ratio must be a number in (0, 1], got {r!r}")
        if self.prune_count is not None:
            c = self.prune_count
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise ValueError(f"prune_count must be an integer >= 1, got {c!r}")
        f = self.min_eig_fraction
        if (
            isinstance(f, bool)
            or not isinstance(f, int | float)
            or not math.isfinite(f)
            or not 0.0 < f < 1.0
        ):
            raise ValueError(f"min_eig_fraction must be a number in (0, 1), got {f!r}")

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

    Raises:
        ValueError: ``prune_count > N`` (or other invalid pruning parameters).
    """
    if not isinstance(block, CurvatureBlock):
        raise ValueError(f"block must be a CurvatureBlock, got {type(block).__name__}")
    if not isinstance(config, ConditioningConfig):
        raise ValueError(f"config must be a ConditioningConfig, got {type(config).__name__}")
    n = block.n
    lam = regularization_lambda(block, config.reg_scheme, config.reg)
    fraction = config.min_eig_fraction

    if config.prune_count is not None and config.prune_count > n:
        raise ValueError(
            f"prune_count must be <= N={n} for block {block.name!r}, got {config.prune_count}"
        )
    if config.prunes:
        k = prune_target(n, ratio=config.prune_ratio, count=config.prune_count)
        a = block.to_dense().clone()
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
        )

    psd = block.kind in _PSD_KINDS
    if block.factor is not None:
        target = _repair_target(block.max_abs_entry() + lam, fraction)
        s = max(0.0, target - lam)
        return LinearSystem(
            block=block, shift=lam + s, reg=lam, repair_shift=s, dense=None, d=n, nnz=n * n
        )

    a = _symmetrized(block.dense, "block.dense")
    a.diagonal().add_(lam)
    target = _repair_target(float(a.abs().max()), fraction)
    if psd:
        s = max(0.0, target - lam)
        if s > 0.0:
            a.diagonal().add_(s)
    else:
        # An indefinite Hessian is shifted until λ_min ≥ λ, as for a PSD block plus λI, so that
        # regularization bounds its step the same way whatever the curvature's sign.
        a, s = repair_positive_definite(a, max(lam, target))
    d, nnz = row_sparsity(a)
    return LinearSystem(block=block, shift=lam + s, reg=lam, repair_shift=s, dense=a, d=d, nnz=nnz)
