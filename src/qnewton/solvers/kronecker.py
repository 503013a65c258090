"""The Kronecker solver: ``(G ⊗ A + s·I)⁻¹ b`` from the eigendecompositions of the two factors."""

from __future__ import annotations

import torch

from qnewton.solvers.base import ClassicalSolver, SolveError, SolveResult, check_rhs, finish, timed
from qnewton.solvers.rates import MachineRates
from qnewton.system import LinearSystem, SystemShape

#: Flops of a symmetric eigendecomposition with eigenvectors, per n³: tridiagonal reduction
#: (4/3 n³) plus accumulating the orthogonal factor and the implicit QR sweeps, ≈ 9n³ in all
#: (Golub & Van Loan, Matrix Computations, 4th ed., §8.3, Algorithm 8.3.3 and its flop count).
EIGH_FLOPS_PER_N3 = 9.0


class KroneckerSolver(ClassicalSolver):
    """``X = Q_G [(Q_Gᵀ V Q_A) ⊘ (λ_G λ_Aᵀ + s)] Q_Aᵀ`` with ``V`` the right-hand side as a
    ``(d_out, d_a)`` matrix (:meth:`~qnewton.curvature.kronecker.KroneckerBlock.shifted_solve`):
    exact for any shift ``s ≥ 0`` (the π-split damping is in the factors already, docs/method.md
    §4.7), and never forms the N×N matrix (N = d_out·d_a).

    Time model: ``9·(d_a³ + d_out³) / R_dense`` (the two eigendecompositions, skipped when the
    block already holds them — a block reused across steps) ``+ 2·(4·d_out²·d_a + 4·d_out·d_a²)
    / R_gemm`` (two pairs of matmuls: in and out of the eigenbases) ``+ t_call``; without the
    first term when the block holds its eigendecompositions already (``kronecker_factored``).
    Applies only to Kronecker systems.
    """

    name = "kronecker"

    def applicable(self, shape: SystemShape) -> bool:
        return shape.kronecker is not None

    def predict_seconds(self, shape: SystemShape, rates: MachineRates, rtol: float) -> float:
        d_a, d_out = shape.kronecker
        factorize = 0.0 if shape.kronecker_factored else (
            EIGH_FLOPS_PER_N3 * (d_a**3 + d_out**3) / rates.dense_flops_per_s)
        apply = 2.0 * (4.0 * d_out * d_out * d_a + 4.0 * d_out * d_a * d_a) / (
            rates.gemm_flops_per_s)
        return factorize + apply + rates.call_overhead_s

    def solve(self, system: LinearSystem, b: torch.Tensor, *, rtol: float = 1e-10) -> SolveResult:
        check_rhs(system, b)
        if system.kronecker is None:
            raise SolveError("kronecker needs a Kronecker-factored system (curvature='kfac')")
        if not system.shift >= 0.0:
            raise SolveError(f"kronecker needs a shift >= 0, got {system.shift}")
        x, seconds = timed(lambda: system.block.shifted_solve(b, system.shift))
        return finish(system, b, x, self.name, seconds)
