"""κ and norm figures of explicit matrices: exact κ, the norm–determinant bounds, Gershgorin.

See docs/method.md §4.2. Conventions of :mod:`qnewton.estimation.kappa` apply (a symmetric
matrix that is not positive definite has κ = inf).
"""

from __future__ import annotations

import math
import time

import torch

from qnewton.estimation.kappa import KappaEstimate, kappa_from_log


def check_square_matrix(a: object, name: str = "a") -> torch.Tensor:
    """Validate a non-empty, square, floating, finite ``(N, N)`` tensor; return it."""
    if not isinstance(a, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(a).__name__}")
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square (N, N) matrix, got {tuple(a.shape)}")
    if not a.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {a.dtype}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} must contain only finite entries")
    return a


def check_symmetric(a: torch.Tensor, name: str = "a") -> None:
    """Require ``a`` symmetric up to rounding (relative tolerance ~1e3·eps·max|a|)."""
    tol = 1e3 * torch.finfo(a.dtype).eps * float(a.abs().max())
    if float((a - a.T).abs().max()) > tol:
        raise ValueError(f"{name} must be symmetric (max |a - a.T| exceeds {tol:.3g})")


def kappa_exact(a: torch.Tensor) -> KappaEstimate:
    """Exact κ = λ_max/λ_min of a symmetric matrix via ``eigvalsh`` (kind ``"exact"``).

    Args:
        a: symmetric ``(N, N)`` matrix.

    Returns:
        The exact κ for SPD ``a`` (up to eigensolver rounding). If ``λ_min ≤ 0`` (not positive
        definite) the value is ``inf`` (log10 ``inf``): by the module's convention a non-SPD matrix
        has no finite condition number for the solvers here.

    Cost: a dense symmetric eigendecomposition, several times a Cholesky solve. Use for ground
    truth and small blocks, not as the scheduler's default.

    Raises:
        ValueError: ``a`` is not a finite, square, symmetric floating matrix.
    """
    start = time.perf_counter()
    check_square_matrix(a)
    check_symmetric(a)
    eig = torch.linalg.eigvalsh(a)
    lo, hi = float(eig[0]), float(eig[-1])
    log_kappa = math.log(hi) - math.log(lo) if lo > 0.0 else math.inf
    return kappa_from_log(log_kappa, "exact", "eigvalsh", time.perf_counter() - start)


def _fro_and_logdet(a: torch.Tensor) -> tuple[float, float]:
    """(ln ‖A‖_F, ln |det A|); the latter is ``-inf`` for a singular matrix."""
    a64 = a.to(torch.float64)
    fro = float(torch.linalg.matrix_norm(a64, "fro"))
    log_fro = math.log(fro) if fro > 0.0 else -math.inf
    sign, logabsdet = torch.linalg.slogdet(a64)
    log_det = float(logabsdet) if float(sign) != 0.0 else -math.inf
    return log_fro, log_det


def kappa_gej_bound(a: torch.Tensor) -> KappaEstimate:
    """Guggenheimer–Edelman–Johnson (1995) bound, kind ``"upper"``.

    ``κ₂(A) < (2/|det A|)·(‖A‖_F/√N)^N`` for any nonsingular square ``A`` (κ₂ = σ_max/σ_min,
    which equals λ_max/λ_min for SPD ``A``). Evaluated in log space with ``slogdet``:
    ``ln κ ≤ ln 2 − ln|det A| + N·(ln ‖A‖_F − ½ ln N)``, so ``log10`` stays finite where the
    plain formula overflows (N ≳ 100); ``value`` is then ``inf``. Singular ``A`` → ``inf``.

    Cost: one LU (O(N³), as much as the solve itself). Astronomically loose for N ≳ 50; see
    :func:`bound_looseness`.
    """
    start = time.perf_counter()
    check_square_matrix(a)
    n = a.shape[0]
    log_fro, log_det = _fro_and_logdet(a)
    if log_det == -math.inf:
        log_kappa = math.inf
    else:
        log_kappa = math.log(2.0) - log_det + n * (log_fro - 0.5 * math.log(n))
    return kappa_from_log(log_kappa, "upper", "gej", time.perf_counter() - start)


def kappa_merikoski_bound(a: torch.Tensor) -> KappaEstimate:
    """Merikoski–Urpala–Virtanen–Tam–Uhlig (1997) bound, kind ``"upper"``.

    ``κ₂(A) ≤ √((1+x)/(1−x))`` with ``x = √(1 − y)``, ``y = (N/‖A‖_F²)^N·det(A)²`` (``0 < y ≤ 1``
    by AM–GM on the squared singular values). When ``y`` is tiny, ``1 − x`` cancels
    catastrophically, so we use ``1 − x = y/(1 + x)``:

        ln κ ≤ ½[ln(1+x) − ln(1−x)] = ln(1 + x) − ½ ln y,   x = √(−expm1(ln y)),

    with ``ln y = N(ln N − 2 ln ‖A‖_F) + 2 ln|det A|`` from ``slogdet``. Valid for any nonsingular
    square ``A``; singular ``A`` → ``inf``. Algebraically it equals the GEJ bound times
    ``(1 + x)/2 ≤ 1``, so it is never looser than GEJ — but once ``y`` is tiny (``x → 1``, any
    ill-scaled spectrum at N ≳ 50) the two coincide and are astronomically loose.
    """
    start = time.perf_counter()
    check_square_matrix(a)
    n = a.shape[0]
    log_fro, log_det = _fro_and_logdet(a)
    if log_det == -math.inf:
        log_kappa = math.inf
    else:
        log_y = min(0.0, n * (math.log(n) - 2.0 * log_fro) + 2.0 * log_det)
        x = math.sqrt(-math.expm1(log_y))
        log_kappa = math.log1p(x) - 0.5 * log_y
    return kappa_from_log(log_kappa, "upper", "merikoski", time.perf_counter() - start)


def bound_looseness(bound: KappaEstimate, exact: KappaEstimate) -> float:
    """``log10(bound / exact)``: how many decades an estimate sits above (>0) or below (<0) κ.

    Uses the ``log10`` fields, so it stays finite when ``bound.value`` overflows. Returns ``inf``
    if the bound is infinite and the exact value finite, ``nan`` if both are infinite.
    """
    if not isinstance(bound, KappaEstimate) or not isinstance(exact, KappaEstimate):
        raise ValueError("bound and exact must both be KappaEstimate instances")
    return bound.log10 - exact.log10


def gershgorin_upper(a: torch.Tensor) -> float:
    """Deterministic upper bound on ``‖A‖₂``: ``√(‖A‖₁·‖A‖_∞)``.

    For symmetric ``A`` this is the Gershgorin bound ``max_i Σ_j |A_ij|`` (max absolute row sum),
    which bounds every ``|λ_i|`` and hence ``‖A‖₂``; for a general square matrix the geometric
    mean of max column and max row sums is still a valid bound on ``‖A‖₂``. Cost O(N²).
    """
    check_square_matrix(a)
    absa = a.abs()
    row = float(absa.sum(dim=1).max())
    col = float(absa.sum(dim=0).max())
    return math.sqrt(row * col)


