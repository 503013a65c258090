"""Woodbury identity for ``A = s·FᵀF + λI`` (empirical Fisher / GGN in factor form)."""

from __future__ import annotations

import torch

from qnewton.solvers.base import (
    ClassicalSolver,
    SolveError,
    SolveResult,
    check_rhs,
    finish,
    timed,
)
from qnewton.solvers.cholesky import cholesky_solve
from qnewton.solvers.rates import MachineRates
from qnewton.system import LinearSystem, SystemShape


class WoodburySolver(ClassicalSolver):
    """``(s·FᵀF + λI)⁻¹ b = (b − Fᵀ (λ/s·I + F Fᵀ)⁻¹ F b) / λ``: an M×M solve instead of N×N.

    Time model: ``2·N·M² / R_gemm`` (forming F Fᵀ, skipped when the analysis already formed it)
    ``+ (M³/3 + 2M²) / R_dense`` (Cholesky of the capacitance matrix) ``+ 16·N·M / bandwidth``
    (the passes ``F b`` and ``Fᵀ y``) ``+ t_call`` (docs/method.md §4.5); for Kronecker rows the
    Gram and the passes are their flops (:class:`~qnewton.curvature.representation.FactorCosts`)
    over ``R_gemm``. Needs factor form and a positive shift.
    """

    name = "woodbury"
    forms_gram = True

    def applicable(self, shape: SystemShape) -> bool:
        return shape.factor_rows is not None and shape.shift_positive

    def predict_seconds(self, shape: SystemShape, rates: MachineRates, rtol: float) -> float:
        n, m = shape.n, shape.factor_rows
        costs = shape.factor_costs
        if costs is None:  # explicit rows: the Gram product and two bandwidth-bound passes
            gram = 2.0 * n * m * m / rates.gemm_flops_per_s
            passes = 16.0 * n * m / rates.bandwidth_bytes_per_s
        else:  # Kronecker rows: both from their factors (and each piece's small operations)
            gram = (costs.gram / rates.gemm_flops_per_s
                    + costs.pieces * rates.iteration_overhead_s)
            passes = (2.0 * costs.product / rates.gemm_flops_per_s
                      + 2 * costs.pieces * rates.iteration_overhead_s)
        return ((0.0 if shape.gram_formed else gram)
                + (m**3 / 3.0 + 2.0 * m * m) / rates.dense_flops_per_s
                + passes + rates.call_overhead_s)

    def solve(self, system: LinearSystem, b: torch.Tensor, *, rtol: float = 1e-10) -> SolveResult:
        check_rhs(system, b)
        x, seconds = timed(lambda: self._solve(system, b))
        return finish(system, b, x, self.name, seconds)

    @staticmethod
    def _solve(system: LinearSystem, b: torch.Tensor) -> torch.Tensor:
        if not system.factor_form:
            raise SolveError("woodbury needs a factor-form system (empirical Fisher or GGN, "
                             "unpruned)")
        lam, scale, block = system.shift, system.block.scale, system.block
        if not lam > 0:
            raise SolveError(f"woodbury needs a positive diagonal shift, got {lam}")
        # Reuses the Gram matrix if the scheduler's analysis (or an earlier step that reused the
        # same curvature block) formed it; the system does not cache it for this solve, the
        # block keeps it (docs/method.md §4.7, "Curvature subsampling and reuse").
        small = system.gram(cache=False).clone()
        small.diagonal().add_(lam / scale)
        inner = cholesky_solve(small, block.apply_factor(b))
        return (b - block.apply_factor_t(inner)) / lam
