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

#: How often a QSVT-output backend doubles κ_eff when its output fails the κ check (a factor
#: 2¹⁰ = 1024 in all) before it raises.
MAX_KAPPA_DOUBLINGS = 10


class PolynomialQLSA(QLSABackend):
    """An ideal QSVT inversion's output, by Chebyshev recurrence (cheap at any N).

    The result's ``qlsa`` dict records: ``kappa_eff`` (the grid value used), ``alpha``,
    ``lambda_lower`` and its source, ``degree`` D, ``qsvt_formula`` (the ``qsvt`` model's
    κ_eff·ln(κ_eff/ε)), ``amplification`` (circuit runs for amplitude amplification),
    ``queries`` = D × amplification (summed over κ-check attempts), ``success_probability`` P
    and its estimate, ``error`` (‖x̃ − x‖/‖x‖ against a classical solve, a diagnostic not in
    ``seconds``; its time is ``reference_seconds``), ``norm_error`` (|‖x̃‖ − ‖x‖|/‖x‖) and
    ``shots``.

    κ check: the λ_min bound the backend is given (conditioning's) decides κ_eff. Every output
    is checked by :func:`kappa_check_residual`; when the residual exceeds what a valid bound
    guarantees, κ_eff is doubled and the solve rerun (its queries counted), up to
    :data:`MAX_KAPPA_DOUBLINGS` times, then SolveError. ``kappa_eff_given`` and ``kappa_check``
    (``"passed"`` or ``"raised"``) record what happened.
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
        b64 = b.detach().to(torch.float64)
        bnorm = float(torch.linalg.vector_norm(b64))
        if not bnorm > 0:
            raise SolveError("the QLSA needs a nonzero right-hand side to prepare |b⟩")
        b_hat = b64 / bnorm
        kappa_given = grid_kappa(bounds.kappa_eff)
        kappa_eff, queries, residual = kappa_given, 0, math.inf
        for doubling in range(MAX_KAPPA_DOUBLINGS + 1):
            poly = inverse_polynomial(kappa_eff, eps)
            self.prepare(system, bounds, poly)
            out = self.apply(system, bounds, poly, b_hat)
            prob = float(out @ out)
            if not prob > 0:
                raise SolveError("the QSVT output has success probability 0")
            runs = amplification_runs(prob)
            queries += poly.degree * runs
            residual = kappa_check_residual(system, bounds.alpha, poly, out, b_hat)
            if residual <= residual_tolerance(system, poly):
                break
            if doubling == MAX_KAPPA_DOUBLINGS:
                raise SolveError(
                    f"the κ bound given to the QLSA is wrong: the output's residual {residual:.3g} "
                    f"exceeds the polynomial's bound {poly.bound:.3g} even at κ_eff = "
                    f"{kappa_eff:.4g} ({2**doubling}× the given {kappa_given:.4g}); A has an "
                    f"eigenvalue below α/κ_eff (or above α)")
            kappa_eff = grid_kappa(2.0 * kappa_eff)
        estimate = prob
        if shots is not None:
            generator = torch.Generator().manual_seed(int(seed))
            estimate = sampled_probability(prob, shots, generator)
            if estimate == 0:
                raise SolveError(f"no run out of shots={shots} succeeded (success probability "
                                 f"{prob:.2e}): the norm cannot be recovered; raise shots")
        x = (bnorm * math.sqrt(estimate) / (poly.scale * bounds.alpha)) * (out / math.sqrt(prob))
        seconds = time.perf_counter() - start
        details: dict[str, float | int | str | None] = {
            "backend": self.name, "eps": eps, "kappa_eff": poly.kappa_eff,
            "kappa_eff_given": kappa_given,
            "kappa_check": "passed" if poly.kappa_eff == kappa_given else "raised",
            "kappa_check_residual": residual,
            "alpha": bounds.alpha, "lambda_lower": bounds.lower,
            "lambda_lower_source": bounds.lower_source, "degree": poly.degree,
            "qsvt_formula": poly.qsvt_formula, "amplification": runs,
            "queries": queries, "success_probability": prob,
            "success_probability_estimate": estimate, "shots": shots,
        }
        reference_start = time.perf_counter()
        details.update(reference_errors(system, b, x))
        details["reference_seconds"] = time.perf_counter() - reference_start
        return finish(system, b, x.to(system.dtype), self.label, seconds, qlsa=details)


def kappa_check_residual(system: LinearSystem, alpha: float, poly: InversePolynomial,
                         out: torch.Tensor, b_hat: torch.Tensor) -> float:
    """``‖(A/α)·p(A/α)b̂/s − b̂‖``: one product with A (float64 on the output ``out``).

    If every eigenvalue of A/α lies in ``[1/κ_eff, 1]`` then ``|p(x)·x/s − 1| ≤ poly.bound``
    there, so this residual is at most ``poly.bound`` (b̂ is a unit vector). A larger residual
    proves that the κ bound (or α) the polynomial was built for is wrong. On hardware the same
    check is one product with the read-out vector.
    """
    product = system.matvec(out.to(system.dtype)).to(torch.float64) / alpha
    return float(torch.linalg.vector_norm(product / poly.scale - b_hat))


def residual_tolerance(system: LinearSystem, poly: InversePolynomial) -> float:
    """The residual a valid κ bound guarantees, plus rounding: the recurrence and the product
    run in the system's dtype, whose relative error is amplified by up to κ_eff
    (‖p(A/α)b̂‖/s ≤ κ_eff)."""
    rounding = 64.0 * torch.finfo(system.dtype).eps * poly.kappa_eff
    return poly.bound + rounding


def reference_errors(system: LinearSystem, b: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """The output's relative error and recovered-norm error against a classical solve (a
    diagnostic: its time is reported as ``reference_seconds``, outside training time)."""
    exact = solve_classical(reference_solver(system), system, b).x.to(torch.float64)
    norm = float(torch.linalg.vector_norm(exact))
    got = float(torch.linalg.vector_norm(x))
    return {"error": relative_error(x, exact),
            "norm_error": abs(got - norm) / norm if norm > 0 else float(np.inf)}
