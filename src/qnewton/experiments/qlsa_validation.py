"""``qnewton validate-qlsa``: the QLSA backends against each other and against exact solves on
random regularized Fisher blocks (docs/method.md §4.11).

Each case is ``A = FᵀF/m + λI`` with F an m×N Gaussian matrix (m = max(1, N/2), so FᵀF/m is
singular and λ_min(A) = λ exactly) and λ = λ_max(FᵀF/m)/(κ − 1), so ``κ(A)`` is exactly the
requested κ; b is Gaussian. Every time in the table is **measured** wall clock on this machine
(emulation of a quantum run, never quantum time); query counts are dimensionless.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from qnewton.curvature import FactorBlock
from qnewton.quantum.backends import QLSA_BACKENDS
from qnewton.quantum.backends.circuit import require_pennylane
from qnewton.quantum.backends.inversion import inverse_polynomial
from qnewton.quantum.backends.phases import symmetric_phases
from qnewton.quantum.qlsa import QLSA_MODELS
from qnewton.solvers import relative_error
from qnewton.system import LinearSystem
from qnewton.validation import check_int, check_open_unit, check_real

#: Backends a validation can compare (``emulated`` is the paper's model, for its statistics).
VALIDATION_BACKENDS = ("polynomial", "circuit", "emulated")


def fisher_case(n: int, kappa: float, seed: int) -> tuple[LinearSystem, torch.Tensor]:
    """A regularized Fisher block of size ``n`` with condition number exactly ``kappa``."""
    g = torch.Generator().manual_seed(seed)
    m = max(1, n // 2)
    f = torch.randn(m, n, generator=g, dtype=torch.float64)
    top = float(torch.linalg.eigvalsh(f @ f.T / m)[-1])
    lam = top / (kappa - 1)
    system = LinearSystem(block=FactorBlock("fisher", "fisher", f, scale=1.0 / m), shift=lam,
                          reg=lam, d=n, nnz=n * n)
    return system, torch.randn(n, generator=g, dtype=torch.float64)


def _cosine(error: torch.Tensor, x: torch.Tensor) -> float:
    """|cos| of the angle between an error vector and the exact solution."""
    ne, nx = float(torch.linalg.vector_norm(error)), float(torch.linalg.vector_norm(x))
    return abs(float(error @ x)) / (ne * nx) if ne > 0 and nx > 0 else 0.0


def validate_case(n: int, kappa: float, eps: float, seed: int,
                  backends: tuple[str, ...]) -> dict[str, Any]:
    """One row of the validation table (see :func:`validate_qlsa`)."""
    system, b = fisher_case(n, kappa, seed)
    exact = torch.linalg.solve(system.to_dense(), b)
    row: dict[str, Any] = {"n": n, "kappa": kappa, "eps": eps, "seed": seed,
                           "time_kind": "measured"}
    start = time.perf_counter()
    poly = QLSA_BACKENDS["polynomial"].solve(system, b, eps=eps, seed=seed)
    row["polynomial_seconds"] = time.perf_counter() - start
    q = poly.qlsa
    alpha_rel = q["kappa_eff"] / kappa  # κ_eff = α·κ in the query models' terms
    row.update({
        "kappa_eff": q["kappa_eff"], "degree": q["degree"], "qsvt_formula": q["qsvt_formula"],
        "degree_ratio": q["degree"] / q["qsvt_formula"], "amplification": q["amplification"],
        "queries": q["queries"], "success_probability": q["success_probability"],
        "polynomial_error_over_eps": q["error"] / eps, "norm_error": q["norm_error"],
        "polynomial_error_cosine": _cosine(poly.x - exact, exact),
        "model_queries": {name: model.queries(kappa, eps, alpha_rel)
                          for name, model in QLSA_MODELS.items()},
    })
    if "emulated" in backends:
        em = QLSA_BACKENDS["emulated"].solve(system, b, eps=eps, seed=seed)
        row["emulated_error_over_eps"] = relative_error(em.x, exact) / eps
        row["emulated_error_cosine"] = _cosine(em.x - exact, exact)
    if "circuit" in backends:
        circuit = QLSA_BACKENDS["circuit"]
        if n > circuit.max_n:
            row["circuit_skipped"] = f"N > {circuit.max_n}"
        else:
            start = time.perf_counter()
            symmetric_phases(inverse_polynomial(q["kappa_eff"], eps).coefficients)
            row["phase_seconds"] = time.perf_counter() - start  # cached for the solve below
            start = time.perf_counter()
            circ = circuit.solve(system, b, eps=eps, seed=seed)
            row["circuit_seconds"] = time.perf_counter() - start
            row["circuit_polynomial_difference"] = relative_error(circ.x, poly.x)
            row["circuit_success_probability"] = circ.qlsa["success_probability"]
    return row


def validate_qlsa(sizes: list[int], kappas: list[float], eps_values: list[float], seed: int = 0,
                  backends: tuple[str, ...] = VALIDATION_BACKENDS) -> list[dict[str, Any]]:
    """Rows for every (N, κ, ε): degree vs the query models, success probability, errors of
    ``polynomial`` (deterministic, vs ε) and ``emulated`` (norm ε by construction), the
    circuit–polynomial difference and measured seconds."""
    sizes = [check_int("sizes", n, minimum=2) for n in sizes]
    kappas = [check_real("kappas", k, low=1.0, low_open=True) for k in kappas]
    eps_values = [check_open_unit("eps", e) for e in eps_values]
    if not sizes or not kappas or not eps_values:
        raise ValueError("sizes, kappas and eps each need at least one value")
    for name in backends:
        if name not in VALIDATION_BACKENDS:
            raise ValueError(f"backends must be among {', '.join(VALIDATION_BACKENDS)}; "
                             f"got {name!r}")
    if "circuit" in backends:
        require_pennylane()  # import once here, so circuit seconds do not include it
    rows = []
    for i, (n, kappa, eps) in enumerate((n, k, e) for n in sizes for k in kappas
                                        for e in eps_values):
        rows.append(validate_case(n, kappa, eps, seed + i, tuple(backends)))
    return rows


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def validation_markdown(rows: list[dict[str, Any]]) -> str:
    """The validation table (markdown); times are measured seconds on this machine."""
    head = ("| N | κ | ε | κ_eff | degree D | D/(κ_eff·ln(κ_eff/ε)) | queries D×amp | jennings "
            "| dalzell | success P | poly err/ε | emulated err/ε | \\|cos(err, x)\\| poly / emul "
            "| norm err | circuit−poly | circuit s (measured) | phases s (measured) "
            "| poly s (measured) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        circuit = r.get("circuit_skipped") or _fmt(r.get("circuit_polynomial_difference"),
                                                   ".1e")
        cos = (f"{_fmt(r['polynomial_error_cosine'], '.2f')} / "
               f"{_fmt(r.get('emulated_error_cosine'), '.2f')}")
        lines.append(
            f"| {r['n']} | {r['kappa']:g} | {r['eps']:g} | {r['kappa_eff']:.4g} | {r['degree']} "
            f"| {r['degree_ratio']:.2f} | {r['queries']:.3g} "
            f"| {r['model_queries']['jennings']:.3g} | {r['model_queries']['dalzell']:.3g} "
            f"| {r['success_probability']:.2e} | {r['polynomial_error_over_eps']:.3f} "
            f"| {_fmt(r.get('emulated_error_over_eps'))} | {cos} | {r['norm_error']:.1e} "
            f"| {circuit} | {_fmt(r.get('circuit_seconds'))} | {_fmt(r.get('phase_seconds'))} "
            f"| {r['polynomial_seconds']:.3g} |")
    return "\n".join(lines)
