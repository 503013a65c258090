"""Conjugate gradients: matvecs only, so it runs on factor-form systems without forming A."""

from __future__ import annotations

import math
import time

import torch

from qnewton.estimation.krylov import kappa_from_cg
from qnewton.solvers.base import ClassicalSolver, SolveError, SolveResult, check_rhs, finish
from qnewton.solvers.rates import MachineRates
from qnewton.system import LinearSystem, SystemShape
from qnewton.validation import check_int, check_open_unit, check_real


def cg_iterations(kappa: float, eps: float) -> int:
    """CG iterations to reduce the A-norm error by ε: ``⌈½·√κ·ln(2/ε)⌉`` (at least 1); the
    classical bound from the Chebyshev polynomial of degree k on [λ_min, λ_max]."""
    k = check_real("kappa", kappa, low=1.0)
    e = check_open_unit("eps", eps)
    return max(1, math.ceil(0.5 * math.sqrt(k) * math.log(2.0 / e)))


class CGSolver(ClassicalSolver):
    """CG on SPD A. Time model (memory-bandwidth bound roofline), per iteration one pass over A
    and the vector updates:

    * bytes = ``8·nnz`` (fp64 values) ``+ 4·nnz + 4·(N+1)`` (CSR indices, only if nnz < N²)
      ``+ 8·8·N`` (≈8 fp64 vector reads/writes: x, r, p, Ap); flops = ``2·nnz + 10·N``;
    * seconds = ``iterations · (max(bytes / bandwidth, flops / R_gemm) + t_iter) + t_call``.
    """

    name = "cg"
    kappa_dependent = True

    def predict_seconds(self, shape: SystemShape, rates: MachineRates, rtol: float) -> float:
        iters = cg_iterations(shape.kappa, rtol)
        return iters * self.iteration_seconds(shape, rates) + rates.call_overhead_s

    def iteration_seconds(self, shape: SystemShape, rates: MachineRates) -> float:
        """Predicted seconds of one iteration (one product with A and the vector updates)."""
        n = check_int("n", shape.n, 1)
        nnz = check_int("nnz", shape.nnz, 1, n * n)
        nbytes = 8.0 * nnz + 64.0 * n
        if nnz < n * n:
            nbytes += 4.0 * nnz + 4.0 * (n + 1)
        flops = 2.0 * nnz + 10.0 * n
        pieces = 0
        if shape.factor_costs is not None:  # A v = s·Fᵀ(F v) + λv from the structure
            nbytes, flops = 64.0 * n, 2.0 * shape.factor_costs.product + 10.0 * n
            pieces = shape.factor_costs.pieces
        per_iteration = max(nbytes / rates.bandwidth_bytes_per_s, flops / rates.gemm_flops_per_s)
        # each piece of a structured factor adds a few small tensor operations per product,
        # priced like one iteration's fixed overhead
        return per_iteration + (1 + pieces) * rates.iteration_overhead_s

    def solve(self, system: LinearSystem, b: torch.Tensor, *, rtol: float = 1e-10,
              max_iter: int | None = None) -> SolveResult:
        """Stops when ‖r‖ ≤ rtol·‖b‖ or after ``max_iter`` iterations (default 10N, room for the
        loss of orthogonality in floating point; for a matrix-free block of rank ≤ r, whose
        ``H + λI`` has at most r + 1 distinct eigenvalues, 10·min(N, r + 1)). CG's step
        coefficients give the Lanczos tridiagonal, whose extreme Ritz values are returned as a κ
        estimate at no extra cost. Raises :class:`SolveError` on a non-positive curvature pᵀAp
        (A not PD) or on non-convergence."""
        check_rhs(system, b)
        if not 0 < rtol < 1:
            raise ValueError(f"rtol must be in (0, 1), got {rtol}")
        limit = 10 * system.n if max_iter is None else max_iter
        rank = getattr(system.block, "rank_bound", None) if system.matrix_free else None
        if max_iter is None and rank is not None:
            limit = 10 * min(system.n, rank + 1)
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
                f"cg did not reach rtol={rtol} in {limit} iterations (ill-conditioned: increase "
                "the regularization, loosen rtol or raise max_iter)"
            )
        kappa = kappa_from_cg(alphas, betas[:-1]) if len(alphas) >= 2 else None
        return finish(system, b, x, "cg", seconds, iterations=len(alphas), kappa=kappa)
