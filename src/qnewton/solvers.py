"""Solvers for ``A x = b``: classical ones, timed on this machine, and an emulated QLSA.

Stage 5 of the pipeline (DESIGN §3). Classical solvers report *measured* wall-clock seconds.
The emulated QLSA returns what a quantum linear-system algorithm would hand back — the solution
with the relative ℓ₂ error ε the algorithm allows, optionally with the sampling noise of reading
the vector out with a finite number of shots — and reports the seconds spent *emulating* it,
which are not the quantum time (that is modeled by :mod:`qnewton.costs`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from qnewton.conditioning import LinearSystem
from qnewton.estimation import KappaEstimate, kappa_from_cg

CLASSICAL_SOLVERS = ("cholesky", "lu", "cg", "woodbury", "inverse")


class SolveError(RuntimeError):
    """A solver could not produce a solution (failed factorization, no convergence, bad input)."""


@dataclass
class SolveResult:
    """Outcome of one solve.

    Attributes:
        x: the solution, shape ``(N,)``.
        solver: solver name (``"cholesky"``, ..., or ``"qlsa-emulated"``).
        seconds: measured wall-clock seconds of the call on this machine. For the emulated QLSA
            this is *emulation* time, not quantum time.
        residual: relative residual ‖A x − b‖₂ / ‖b‖₂ (measured after the solve).
        iterations: CG iterations, else ``None``.
        kappa: κ estimate obtained as a by-product (CG Ritz values), else ``None``.
    """

    x: torch.Tensor
    solver: str
    seconds: float
    residual: float
    iterations: int | None = None
    kappa: KappaEstimate | None = None


def _relative_residual(system: LinearSystem, x: torch.Tensor, b: torch.Tensor) -> float:
    bnorm = float(torch.linalg.vector_norm(b))
    r = float(torch.linalg.vector_norm(system.matvec(x) - b))
    return r / bnorm if bnorm > 0 else r


def _check_rhs(system: LinearSystem, b: torch.Tensor) -> None:
    if b.ndim != 1 or b.shape[0] != system.n:
        raise ValueError(f"b must have shape ({system.n},), got {tuple(b.shape)}")


def _cholesky_x(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        raise SolveError(
            f"Cholesky factorization failed at leading minor {int(info)}: the matrix is not "
            "positive definite (increase the regularization)"
        )
    # Two triangular solves instead of torch.cholesky_solve, which copies the N×N factor into
    # LAPACK's layout first (≈13% of the whole solve at N = 4000); L and Lᵀ are used in place.
    y = torch.linalg.solve_triangular(factor, b.unsqueeze(1), upper=False)
    return torch.linalg.solve_triangular(factor.mT, y, upper=True).squeeze(1)


def _lu_x(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lu, pivots, info = torch.linalg.lu_factor_ex(a)
    if int(info) != 0:
        raise SolveError(
            f"LU factorization failed: U[{int(info) - 1}] is exactly zero (singular matrix; "
            "increase the regularization)"
        )
    return torch.linalg.lu_solve(lu, pivots, b.unsqueeze(1)).squeeze(1)


def _inverse_x(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inverse, info = torch.linalg.inv_ex(a)
    if int(info) != 0:
        raise SolveError(
            "explicit inverse failed: the matrix is singular (increase the regularization)"
        )
    return inverse @ b


def _woodbury_x(system: LinearSystem, b: torch.Tensor) -> torch.Tensor:
    """(s·FᵀF + λI)⁻¹ b = (b − Fᵀ (λ/s·I + F Fᵀ)⁻¹ F b) / λ  — an M×M solve instead of N×N."""
    if not system.factor_form:
        raise SolveError("woodbury needs a factor-form system (empirical Fisher or GGN, unpruned)")
    lam, scale, f = system.shift, system.block.scale, system.block.factor
    if not lam > 0:
        raise SolveError(f"woodbury needs a positive diagonal shift, got {lam}")
    # Reuses the Gram matrix if the scheduler's analysis formed it; never caches one itself.
    small = system.gram(cache=False).clone()
    small.diagonal().add_(lam / scale)
    inner = _cholesky_x(small, f @ b)
    return (b - f.T @ inner) / lam


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    x = fn()
    return x, time.perf_counter() - start


def _finish(system, b, x, name, seconds, **extra) -> SolveResult:
    if not bool(torch.isfinite(x).all()):
        raise SolveError(f"{name} produced non-finite values")
    return SolveResult(x=x, solver=name, seconds=seconds,
                       residual=_relative_residual(system, x, b), **extra)


def _solve_dense(
    name: str, kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    system: LinearSystem, b: torch.Tensor,
) -> SolveResult:
    _check_rhs(system, b)
    # Forming A from a factor (N²M flops) is part of a dense solver's cost, so it is timed.
    x, seconds = _timed(lambda: kernel(system.to_dense(), b))
    return _finish(system, b, x, name, seconds)


def solve_cholesky(system: LinearSystem, b: torch.Tensor) -> SolveResult:
    """Dense Cholesky solve (N³/3 flops). Raises :class:`SolveError` if A is not PD."""
    return _solve_dense("cholesky", _cholesky_x, system, b)


def solve_lu(system: LinearSystem, b: torch.Tensor) -> SolveResult:
    """Dense LU solve with partial pivoting (2N³/3 flops)."""
    return _solve_dense("lu", _lu_x, system, b)


def solve_inverse(system: LinearSystem, b: torch.Tensor) -> SolveResult:
    """Explicit inverse then multiply (≈2N³ flops): the code release's approach, kept as the
    release-compatible baseline. Never the best choice."""
    return _solve_dense("inverse", _inverse_x, system, b)


def solve_woodbury(system: LinearSystem, b: torch.Tensor) -> SolveResult:
    """Woodbury identity for A = s·FᵀF + λI, F ∈ R^{M×N}: (2NM² + M³/3) flops, no N×N matrix.

    The ``2NM²`` Gram product is cached on the system: when the scheduler's analysis already
    formed it (small M), it is timed there (estimation phase), not again here.
    """
    _check_rhs(system, b)
    x, seconds = _timed(lambda: _woodbury_x(system, b))
    return _finish(system, b, x, "woodbury", seconds)


def solve_cg(
    system: LinearSystem,
    b: torch.Tensor,
    *,
    rtol: float = 1e-10,
    max_iter: int | None = None,
) -> SolveResult:
    """Conjugate gradients on SPD A using matvecs only (works on factor-form systems).

    Stops when ‖r‖ ≤ rtol·‖b‖ or after ``max_iter`` (default 10N, room for the loss of
    orthogonality in floating point) iterations. CG's step
    coefficients give the Lanczos tridiagonal, whose extreme eigenvalues (Ritz values) are
    returned as a κ estimate at no extra cost. Raises :class:`SolveError` on a non-positive
    curvature pᵀAp (A not PD) or on non-convergence.
    """
    _check_rhs(system, b)
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol}")
    limit = 10 * system.n if max_iter is None else max_iter
    if limit < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    alphas: list[float] = []
    betas: list[float] = []
    start = time.perf_counter()
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    target = (rtol * float(torch.linalg.vector_norm(b))) ** 2
    converged = rr <= target
    while not converged and len(alphas) < limit:
        ap = system.matvec(p)
        curvature = float(p @ ap)
        if not curvature > 0:
            raise SolveError(
                f"cg met non-positive curvature pᵀAp = {curvature}: A is not PD (increase the "
                "regularization)"
            )
        alpha = rr / curvature
        x.add_(p, alpha=alpha)
        r.add_(ap, alpha=-alpha)
        rr_new = float(r @ r)
        alphas.append(alpha)
        converged = rr_new <= target
        beta = rr_new / rr
        betas.append(beta)
        p = r + beta * p
        rr = rr_new
    seconds = time.perf_counter() - start
    if not converged:
        raise SolveError(
            f"cg did not reach rtol={rtol} in {limit} iterations (ill-conditioned: increase the "
            "regularization, loosen rtol or raise max_iter)"
        )
    kappa = kappa_from_cg(alphas, betas[:-1]) if len(alphas) >= 2 else None
    return _finish(system, b, x, "cg", seconds, iterations=len(alphas), kappa=kappa)


CLASSICAL_SOLVE_FUNCTIONS: dict[str, Callable[[LinearSystem, torch.Tensor], SolveResult]] = {
    "cholesky": solve_cholesky,
    "lu": solve_lu,
    "cg": solve_cg,
    "woodbury": solve_woodbury,
    "inverse": solve_inverse,
}


def solve_classical(
    name: str, system: LinearSystem, b: torch.Tensor, *, rtol: float = 1e-10
) -> SolveResult:
    """Run the classical solver called ``name`` (one of :data:`CLASSICAL_SOLVERS`); ``rtol`` is
    the relative residual CG stops at (direct solvers are exact up to round-off)."""
    try:
        fn = CLASSICAL_SOLVE_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"solver must be one of {CLASSICAL_SOLVERS}, got {name!r}") from None
    if name == "cg":
        return solve_cg(system, b, rtol=rtol)
    return fn(system, b)


def applicable_solvers(system: LinearSystem) -> tuple[str, ...]:
    """Classical solvers that can run on ``system`` (Woodbury needs factor form and λ > 0)."""
    names = ["cholesky", "lu", "cg", "inverse"]
    if system.factor_form and system.shift > 0:
        names.append("woodbury")
    return tuple(names)


def _unit_vector(n: int, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    u = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype)
    return u / torch.linalg.vector_norm(u)


def _sampled_readout(x: torch.Tensor, shots: int, generator: torch.Generator) -> torch.Tensor:
    """Estimate the normalized state x/‖x‖ from ``shots`` computational-basis measurements.

    Magnitudes come from the sampled frequencies √(count_i/shots); signs are taken as known
    (real amplitudes, recovered e.g. by interference with a reference state). Unsampled
    components read as zero.
    """
    probs = (x / torch.linalg.vector_norm(x)).double().square()
    counts = torch.bincount(
        torch.multinomial(probs, shots, replacement=True, generator=generator),
        minlength=x.numel(),
    )
    return (torch.sign(x).double() * torch.sqrt(counts.double() / shots)).to(x.dtype)


def _recover_norm(system: LinearSystem, direction: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scale a unit direction x̂ to c·x̂ minimizing ‖A c x̂ − b‖: c = (x̂ᵀAb)/(x̂ᵀA²x̂) (A sym.)."""
    ax = system.matvec(direction)
    denom = float(ax @ ax)
    if not denom > 0:
        raise SolveError("QLSA readout returned a direction in the null space of A")
    return direction * (float(ax @ b) / denom)


def emulate_qlsa(
    system: LinearSystem,
    b: torch.Tensor,
    *,
    eps: float,
    shots: int | None = None,
    seed: int = 0,
    exact_solver: str | None = None,
) -> SolveResult:
    """Emulate a QLSA: return x̃ with ‖x̃ − x‖₂ = ε·‖x‖₂ (the algorithm's allowed error, in a
    random direction drawn from ``seed``), where x = A⁻¹b is computed classically.

    With ``shots``, the normalized state is additionally read out by sampling (see
    :func:`_sampled_readout`) and its norm recovered classically, so the result carries the
    sampling noise of a finite shot budget as well. ``seconds`` is the *emulation* time on this
    machine; the modeled quantum time comes from :func:`qnewton.costs.quantum_cost`.
    """
    _check_rhs(system, b)
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    if shots is not None and shots < 1:
        raise ValueError(f"shots must be a positive integer or None, got {shots}")
    name = exact_solver or ("woodbury" if "woodbury" in applicable_solvers(system) else "cholesky")
    generator = torch.Generator().manual_seed(int(seed))
    start = time.perf_counter()
    exact = solve_classical(name, system, b).x
    noisy = exact + eps * torch.linalg.vector_norm(exact) * _unit_vector(
        system.n, generator, exact.dtype
    )
    if shots is not None:
        noisy = _recover_norm(system, _sampled_readout(noisy, shots, generator), b)
    seconds = time.perf_counter() - start
    return _finish(system, b, noisy, "qlsa-emulated", seconds)


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    """‖x − ref‖₂ / ‖ref‖₂ (``inf`` if the reference is zero and x is not)."""
    ref = float(torch.linalg.vector_norm(reference))
    diff = float(torch.linalg.vector_norm(x - reference))
    if ref == 0:
        return 0.0 if diff == 0 else math.inf
    return diff / ref
