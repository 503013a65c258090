"""The ``polynomial`` QLSA backend: the exact output of an ideal QSVT inversion circuit, computed
classically (docs/method.md §4.11).

It block-encodes ``A/α`` (α ≥ ‖A‖₂,
:func:`~qnewton.quantum.backends.inversion.spectral_bounds`), builds the odd inverse polynomial
p for ``(κ_eff, ε)`` in the Chebyshev basis, applies ``p(A/α)`` to ``b̂ = b/‖b‖`` by the
three-term recurrence (D products with A), and returns what the circuit hands back: the
normalized state ``p(A/α)b̂/√P``, scaled by the norm recovered from the success probability
``P = ‖p(A/α)b̂‖²``: ``x̃ = ‖b‖·√P̂/(s·α)·state`` (p(x) ≈ s/x), where ``P̂ = P`` or, with
``shots``, a binomial estimate from that many runs. Its error is the polynomial's error at A's
eigenvalues (deterministic), not a random direction.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from qnewton.quantum.backends.base import QLSABackend
from qnewton.quantum.backends.inversion import (
    InversePolynomial,
    SpectralBounds,
    amplification_runs,
    apply_chebyshev,
    grid_kappa,
    inverse_polynomial,
    sampled_probability,
    spectral_bounds,
)
from qnewton.solvers import reference_solver, solve_classical
from qnewton.solvers.base import SolveError, SolveResult, check_rhs, finish, relative_error
from qnewton.system import LinearSystem
from qnewton.validation import check_int, check_open_unit


class PolynomialQLSA(QLSABackend):
    """An ideal QSVT inversion's output, by Chebyshev recurrence (cheap at any N).

    The result's ``qlsa`` dict records: ``kappa_eff`` (the grid value used), ``alpha``,
    ``lambda_lower`` and its source, ``degree`` D, ``qsvt_formula`` (the ``qsvt`` model's
    κ_eff·ln(κ_eff/ε)), ``amplification`` (circuit runs for amplitude amplification),
    ``queries`` = D × amplification, ``success_probability`` P and its estimate, ``error``
    (‖x̃ − x‖/‖x‖ against a classical solve, a diagnostic not in ``seconds``), ``norm_error``
    (|‖x̃‖ − ‖x‖|/‖x‖) and ``shots``.
    """

    name = "polynomial"
    label = "qlsa-polynomial"

    def prepare(self, system: LinearSystem, bounds: SpectralBounds,
                poly: InversePolynomial) -> None:
        """Check the system fits this backend before any work (none for this backend)."""

    def apply(self, system: LinearSystem, bounds: SpectralBounds, poly: InversePolynomial,
              b_hat: torch.Tensor) -> torch.Tensor:
        """``p(A/α)·b̂`` in float64 (the post-selected, unnormalized output amplitudes)."""
        alpha = bounds.alpha

        def matvec(v: torch.Tensor) -> torch.Tensor:
            return system.matvec(v.to(system.dtype)).to(torch.float64) / alpha

        return apply_chebyshev(poly.coefficients, matvec, b_hat)

    def solve(self, system: LinearSystem, b: torch.Tensor, *, eps: float,
              shots: int | None = None, seed: int = 0) -> SolveResult:
        check_rhs(system, b)
        eps = check_open_unit("eps", eps)
        if shots is not None:
            check_int("shots", shots, 1)
        start = time.perf_counter()
        bounds = spectral_bounds(system)
        poly = inverse_polynomial(grid_kappa(bounds.kappa_eff), eps)
        self.prepare(system, bounds, poly)
        b64 = b.detach().to(torch.float64)
        bnorm = float(torch.linalg.vector_norm(b64))
        if not bnorm > 0:
            raise SolveError("the QLSA needs a nonzero right-hand side to prepare |b⟩")
        out = self.apply(system, bounds, poly, b64 / bnorm)
        prob = float(out @ out)
        if not prob > 0:
            raise SolveError("the QSVT output has success probability 0")
        estimate = prob
        if shots is not None:
            generator = torch.Generator().manual_seed(int(seed))
            estimate = sampled_probability(prob, shots, generator)
            if estimate == 0:
                raise SolveError(f"no run out of shots={shots} succeeded (success probability "
                                 f"{prob:.2e}): the norm cannot be recovered; raise shots")
        x = (bnorm * math.sqrt(estimate) / (poly.scale * bounds.alpha)) * (out / math.sqrt(prob))
        seconds = time.perf_counter() - start
        runs = amplification_runs(prob)
        details: dict[str, float | int | str | None] = {
            "backend": self.name, "eps": eps, "kappa_eff": poly.kappa_eff,
            "alpha": bounds.alpha, "lambda_lower": bounds.lower,
            "lambda_lower_source": bounds.lower_source, "degree": poly.degree,
            "qsvt_formula": poly.qsvt_formula, "amplification": runs,
            "queries": poly.degree * runs, "success_probability": prob,
            "success_probability_estimate": estimate, "shots": shots,
        }
        details.update(_errors(system, b, x))
        return finish(system, b, x.to(system.dtype), self.label, seconds, qlsa=details)


def _errors(system: LinearSystem, b: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """The output's relative error and recovered-norm error against a classical solve."""
    exact = solve_classical(reference_solver(system), system, b).x.to(torch.float64)
    norm = float(torch.linalg.vector_norm(exact))
    got = float(torch.linalg.vector_norm(x))
    return {"error": relative_error(x, exact),
            "norm_error": abs(got - norm) / norm if norm > 0 else float(np.inf)}
