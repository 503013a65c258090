"""The run report's QSVT-output section: per step, what the ``polynomial`` / ``circuit`` QLSA
backends measured (success probability, recovered-norm error, degree vs the ``qsvt`` formula;
docs/method.md §4.11). Absent for runs whose quantum solves were emulated."""

from __future__ import annotations

import statistics

from qnewton.reports.html import esc, fmt, table
from qnewton.reports.reading import RunData, finite


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def qlsa_output_section(run: RunData, heading: str = "h2") -> str:
    """A heading and a per-step table, or ``""`` when no solve recorded a success probability."""
    solves = [s for s in run.solves if finite(s.get("success_probability")) is not None]
    if not solves:
        return ""
    steps: dict[int, list[dict]] = {}
    for s in solves:
        steps.setdefault(int(s.get("step", 0)), []).append(s)
    rows = []
    for step, ss in sorted(steps.items()):
        probs = [finite(s["success_probability"]) for s in ss]
        norms = [v for v in (finite(s.get("norm_error")) for s in ss) if v is not None]
        errs = [v for v in (finite(s.get("qlsa_error")) for s in ss) if v is not None]
        ratio = [s["qlsa_degree"] / s["qlsa_degree_formula"] for s in ss
                 if s.get("qlsa_degree") and finite(s.get("qlsa_degree_formula"))]
        rows.append([step, len(ss), fmt(min(probs)), fmt(_median(probs)),
                     fmt(max(norms) if norms else None), fmt(max(errs) if errs else None),
                     fmt(_median(ratio)),
                     fmt(sum(finite(s.get("qlsa_queries")) or 0.0 for s in ss))])
    backends = sorted({str(s.get("qlsa_backend")) for s in solves})
    intro = (f"<p>Quantum solves by the {esc(', '.join(backends))} backend: the QSVT output's "
             "success probability P, the relative error of the norm recovered from P and of the "
             "whole answer (against a classical solve), the polynomial degree over the qsvt "
             "model's κ_eff·ln(κ_eff/ε), and the actual queries (degree × amplitude-"
             "amplification runs). Dimensionless; no times.</p>")
    return f"<{heading}>QSVT outputs</{heading}>" + intro + table(
        ["step (0-based)", "solves", "min P", "median P", "max norm error", "max error",
         "median degree / formula", "queries (sum)"], rows)
