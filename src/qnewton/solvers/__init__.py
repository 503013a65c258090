"""Classical solvers (pipeline stage 5): one class per solver, one registry.

Each solver owns its solve, its applicability and its time model (:mod:`qnewton.solvers.base`).
Adding a solver is one new file here and one entry in :data:`SOLVERS`.
"""

from __future__ import annotations

import torch

from qnewton.registry import Registry
from qnewton.solvers.base import (
    ClassicalSolver,
    DenseFactorizationSolver,
    SolveError,
    SolveResult,
    relative_error,
)
from qnewton.solvers.cg import CGSolver, cg_iterations
from qnewton.solvers.cholesky import CholeskySolver
from qnewton.solvers.inverse import InverseSolver
from qnewton.solvers.kronecker import KroneckerSolver
from qnewton.solvers.lu import LUSolver
from qnewton.solvers.rates import MachineRates
from qnewton.solvers.woodbury import WoodburySolver
from qnewton.system import LinearSystem, SystemShape

#: The classical solvers, in the order their predictions are listed in solve records.
SOLVERS: Registry[ClassicalSolver] = Registry("solver")
for _solver in (CholeskySolver(), LUSolver(), InverseSolver(), CGSolver(), WoodburySolver(),
                KroneckerSolver()):
    SOLVERS.register(_solver.name, _solver)


def shape_of(system: LinearSystem, kappa: float = 1.0) -> SystemShape:
    """The :class:`SystemShape` of a system, with the κ its cost models should use."""
    return SystemShape(n=system.n, nnz=system.nnz, d=system.d, kappa=kappa,
                       factor_rows=system.factor_rows, shift_positive=system.shift > 0,
                       gram_formed=system.has_gram, matrix_free=system.matrix_free,
                       kronecker=system.kronecker,
                       kronecker_factored=system.kronecker is not None and system.block.has_eig,
                       factor_costs=system.block.costs if system.factor_form else None)


def applicable_solvers(system: LinearSystem) -> tuple[str, ...]:
    """Names of the solvers that can run on ``system`` (Woodbury: factor form and λ > 0)."""
    shape = shape_of(system)
    return tuple(name for name, solver in SOLVERS.items() if solver.applicable(shape))


def reference_solver(system: LinearSystem) -> str:
    """The exact solver an emulation or a diagnostic takes as its reference for ``system``: one
    that works on the factor (Woodbury) when it is the smaller system (M < N rows: with M ≥ N its
    M×M capacitance matrix is larger than A), else Cholesky."""
    rows = system.factor_rows
    shape = shape_of(system)
    if rows is not None and rows < system.n and SOLVERS["woodbury"].applicable(shape):
        return "woodbury"
    return "cholesky"


def predict_classical(shape: SystemShape, rates: MachineRates, rtol: float) -> dict[str, float]:
    """Predicted seconds of every solver applicable to ``shape``, in registry order."""
    return {name: solver.predict_seconds(shape, rates, rtol)
            for name, solver in SOLVERS.items() if solver.applicable(shape)}


def solve_classical(name: str, system: LinearSystem, b: torch.Tensor, *,
                    rtol: float = 1e-10) -> SolveResult:
    """Run the solver called ``name``; ``rtol`` is where CG stops (direct solvers are exact up
    to round-off)."""
    return SOLVERS[name].solve(system, b, rtol=rtol)


__all__ = [
    "SOLVERS", "ClassicalSolver", "DenseFactorizationSolver", "MachineRates", "SolveError",
    "SolveResult", "applicable_solvers", "cg_iterations", "predict_classical", "reference_solver",
    "relative_error", "shape_of", "solve_classical",
]
