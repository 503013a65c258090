"""What every classical solver is: its solve, its applicability and its time model, in one class.

Classical solvers report *measured* wall-clock seconds (:attr:`SolveResult.seconds`); their
:meth:`~ClassicalSolver.predict_seconds` is the calibrated cost model the scheduler compares with
the *modeled* quantum time (docs/method.md §4.5).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from qnewton.estimation.kappa import KappaEstimate
from qnewton.solvers.rates import MachineRates
from qnewton.system import LinearSystem, SystemShape


class SolveError(RuntimeError):
    """A solver could not produce a solution (failed factorization, no convergence, bad input)."""


@dataclass
class SolveResult:
    """Outcome of one solve.

    Attributes:
        x: the solution, shape ``(N,)``.
        solver: solver name (``"cholesky"``, ..., or a QLSA backend's name).
        seconds: measured wall-clock seconds of the call on this machine. For a QLSA backend this
            is *emulation* time, not quantum time.
        residual: relative residual ‖A x − b‖₂ / ‖b‖₂ (measured after the solve).
        iterations: CG iterations, else ``None``.
        kappa: κ estimate obtained as a by-product (CG Ritz values), else ``None``.
        qlsa: what a QSVT-output backend measured about its run (degree, queries, success
            probability, recovered-norm error, ...; docs/method.md §4.11), else ``None``.
    """

    x: torch.Tensor
    solver: str
    seconds: float
    residual: float
    iterations: int | None = None
    kappa: KappaEstimate | None = None
    qlsa: dict[str, float | int | str | None] | None = None


def check_rhs(system: LinearSystem, b: torch.Tensor) -> None:
    if b.ndim != 1 or b.shape[0] != system.n:
        raise ValueError(f"b must have shape ({system.n},), got {tuple(b.shape)}")


def relative_residual(system: LinearSystem, x: torch.Tensor, b: torch.Tensor) -> float:
    """‖A x − b‖₂ / ‖b‖₂ (the absolute residual when b = 0)."""
    bnorm = float(torch.linalg.vector_norm(b))
    r = float(torch.linalg.vector_norm(system.matvec(x) - b))
    return r / bnorm if bnorm > 0 else r


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    """‖x − ref‖₂ / ‖ref‖₂ (``inf`` if the reference is zero and x is not)."""
    ref = float(torch.linalg.vector_norm(reference))
    diff = float(torch.linalg.vector_norm(x - reference))
    if ref == 0:
        return 0.0 if diff == 0 else math.inf
    return diff / ref


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """``fn()`` and its measured wall-clock seconds."""
    start = time.perf_counter()
    x = fn()
    return x, time.perf_counter() - start


def finish(system: LinearSystem, b: torch.Tensor, x: torch.Tensor, name: str, seconds: float,
           **extra) -> SolveResult:
    """Check the solution is finite and wrap it with its residual."""
    if not bool(torch.isfinite(x).all()):
        raise SolveError(f"{name} produced non-finite values")
    return SolveResult(x=x, solver=name, seconds=seconds,
                       residual=relative_residual(system, x, b), **extra)


class ClassicalSolver(ABC):
    """A classical solver: name, applicability, time model and solve.

    Attributes:
        name: registry name.
        forms_matrix: whether it needs the explicit N×N matrix (dense factorizations); such a
            solver is kept away from factor-form systems whose N×N matrix would not fit the
            memory budget, its prediction includes forming A from a factor, and it never
            applies to a matrix-free system.
        kappa_dependent: whether its predicted time depends on κ (CG); the scheduler estimates
            κ only when such a solver could win the classical choice (docs/method.md §4.5).
        forms_gram: whether its solve forms the M×M Gram matrix of a factor-form system, which
            the κ analysis can then share (Woodbury; docs/method.md §4.8).
    """

    name: str
    forms_matrix: bool = False
    kappa_dependent: bool = False
    forms_gram: bool = False

    def applicable(self, shape: SystemShape) -> bool:
        """Whether it can solve a system of this shape (all SPD systems, unless overridden)."""
        return True

    @abstractmethod
    def predict_seconds(self, shape: SystemShape, rates: MachineRates, rtol: float) -> float:
        """Predicted seconds on a machine with ``rates`` (``rtol``: CG's stopping tolerance)."""

    @abstractmethod
    def solve(self, system: LinearSystem, b: torch.Tensor, *, rtol: float = 1e-10) -> SolveResult:
        """Solve ``A x = b`` (``rtol`` is used by iterative solvers only)."""


class DenseFactorizationSolver(ClassicalSolver):
    """A direct solver on the explicit matrix: ``flops(N) / R_dense + t_call`` plus forming A
    when the system is held as a factor. Forming A is part of the timed solve too."""

    forms_matrix = True

    def applicable(self, shape: SystemShape) -> bool:
        return not shape.matrix_free

    @abstractmethod
    def flops(self, n: int) -> float:
        """Flops of one solve of an N×N system."""

    @abstractmethod
    def solve_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``x`` with ``a x = b`` for an explicit ``(N, N)`` matrix ``a``."""

    def predict_seconds(self, shape: SystemShape, rates: MachineRates, rtol: float) -> float:
        seconds = self.flops(shape.n) / rates.dense_flops_per_s + rates.call_overhead_s
        if shape.factor_costs is not None:  # FᵀF from the structure, then the shift pass
            seconds += (shape.factor_costs.normal / rates.gemm_flops_per_s
                        + 16.0 * shape.n * shape.n / rates.bandwidth_bytes_per_s)
        elif shape.factor_rows is not None:
            seconds += rates.forming_seconds(shape.n, shape.factor_rows)
        return seconds

    def solve(self, system: LinearSystem, b: torch.Tensor, *, rtol: float = 1e-10) -> SolveResult:
        check_rhs(system, b)
        x, seconds = timed(lambda: self.solve_matrix(system.to_dense(), b))
        return finish(system, b, x, self.name, seconds)
