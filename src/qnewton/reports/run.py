"""The report of one run directory (``config.json`` + ``steps.jsonl``, written by training).

The page is the integrity warnings (:mod:`.integrity`), a headline (:mod:`.headline`), a summary
table, then every plot of :data:`~.run_plots.RUN_PLOTS` under its section, a per-block table
after the Hessian plots, where quantum would pay off (:mod:`.amdahl`), and the run's events. A
comparison report links to each run's own report and shows its headline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qnewton.reports.amdahl import amdahl_html
from qnewton.reports.figures import Plots
from qnewton.reports.headline import headline_html, run_headline
from qnewton.reports.html import (
    MEASURED,
    TOTAL,
    ReportPage,
    esc,
    fmt,
    kv_table,
    note,
    secs,
    table,
)
from qnewton.reports.integrity import check_run
from qnewton.reports.qlsa_outputs import qlsa_output_section
from qnewton.reports.rates import RATES_HEADING, rates_html
from qnewton.reports.reading import RunData, finite, load_run, total_of
from qnewton.reports.run_plots import HESSIAN_BLOCKS, RUN_PLOTS, RUN_SECTIONS, RunSection
from qnewton.reports.settings import settings_rows

EVENTS_SHOWN = 50
#: Heading of the section on where quantum would pay off (:mod:`.amdahl`).
AMDAHL_HEADING = "Where quantum would pay off (Amdahl)"


def run_summary(run: RunData) -> str:
    """The run's settings and final figures, every time labelled with its clock."""
    vals, source = run.final_values()
    parts = []
    if run.summary_problem is not None:
        parts.append(f"<p>Figures from {esc(source)} (summary.json {esc(run.summary_problem)}; "
                     "see the warnings at the top).</p>")
    metric = run.metric
    metric_key = f"test_{metric}" if metric else None
    hw = run.hardware
    pairs: list[tuple[str, Any]] = [
        ("status", vals.get("status", "—")),
        ("task", run.get("task", "—")),
        ("optimizer", run.optimizer),
        ("hardware profile (for modeled times)", run.hardware_label),
        ("steps", fmt(vals.get("steps"))),
    ]
    pairs += settings_rows(run.cfg, run.solves)
    used = sorted({str(s["policy"]) for s in run.solves if s.get("policy")})
    if used:
        pairs.append(("routing policy used (solves.jsonl)", ", ".join(used)))
    if run.config.get("learning_rate") is not None:
        pairs.append(("learning rate", fmt(run.config["learning_rate"])))
    if metric_key:
        label = f"final test {metric}"
        if "metric_at_step" in vals:
            label += f" (evaluated at step {vals['metric_at_step']})"
        pairs.append((label, fmt(vals.get(metric_key))))
    else:
        pairs.append(("final test metric", "no evaluation recorded"))
    pairs.append(("final test loss", fmt(vals.get("test_loss"))))
    pairs += [
        (f"{MEASURED} seconds", secs(vals.get("measured_seconds"))),
        ("emulation seconds (measured; part of measured)", secs(vals.get("emulation_seconds"))),
        (f"modeled quantum seconds (profile {hw})", secs(vals.get("modeled_quantum_seconds"))),
        (f"{TOTAL} seconds (profile {hw})", secs(total_of(vals))),
        ("quantum solves", fmt(vals.get("quantum_solves"))),
        ("classical solves", fmt(vals.get("classical_solves"))),
    ]
    if "gradient_fallbacks" in vals:
        pairs.append(("gradient fallbacks", fmt(vals.get("gradient_fallbacks"))))
    by_profile = vals.get("modeled_by_profile")
    if isinstance(by_profile, dict) and by_profile:
        pairs.append(("modeled seconds by profile",
                      ", ".join(f"{k}: {secs(v)}" for k, v in by_profile.items())))
    parts.append(kv_table(pairs))
    return "".join(parts)


def block_table(run: RunData) -> str:
    """Per Hessian block: solves by solver, fallbacks, κ, size, and solve seconds per clock."""
    hw = run.hardware
    rows = []
    for b in run.blocks():
        ss = run.solves_of(b)
        q = [s for s in ss if s.get("choice") == "quantum"]
        kap = sorted(k for k in (finite(s.get("kappa")) for s in ss) if k is not None)
        kex = [k for k in (finite(s.get("kappa_exact")) for s in ss) if k is not None]
        meas = sum(finite(s.get("measured_classical_seconds")) or 0.0 for s in ss)
        mod = sum(finite(s.get("modeled_quantum_seconds")) or 0.0 for s in ss)
        fb = sum(1 for s in ss if s.get("fallback"))
        last = ss[-1]
        rows.append([b, len(ss), len(q), len(ss) - len(q), fb,
                     fmt(kap[len(kap) // 2]) if kap else "—",
                     fmt(kex[-1]) if kex else "—",
                     fmt(last.get("n")), fmt(last.get("d")),
                     secs(meas), secs(mod)])
    return "<p>Per block:</p>" + table(
        ["block", "solves", "quantum", "classical", "fallbacks", "median estimated κ",
         "last exact κ", "last N", "last d", "classical solve seconds (measured)",
         f"quantum solve seconds (modeled, {hw})"], rows)


def events_table(run: RunData, limit: int = EVENTS_SHOWN) -> str:
    if "events.jsonl" in run.unreadable_files:
        return "<p>Events not shown: events.jsonl is unreadable (see the warnings at the top).</p>"
    if not run.events:
        return "<p>No events recorded.</p>"
    rows = []
    for e in run.events[:limit]:
        extra = {k: v for k, v in e.items() if k not in ("step", "kind", "message")}
        rows.append([fmt(e.get("step")), e.get("kind", ""), e.get("message", ""),
                     json.dumps(extra, default=str) if extra else ""])
    head = f"<p>{len(run.events)} event(s)"
    head += f"; the first {limit} are shown.</p>" if len(run.events) > limit else ".</p>"
    return head + table(["step (0-based)", "kind", "message", "details"], rows)


#: Tables shown after a section's plots.
SECTION_TABLES: dict[RunSection, Callable[[RunData], str]] = {HESSIAN_BLOCKS: block_table}


def _join_titles(titles: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"


def _section(run: RunData, section: RunSection, plots: Plots) -> str:
    entries = [p for p in RUN_PLOTS.values() if p.section == section]
    if section.needs_solves and not run.solves:
        skipped = _join_titles([p.title for p in entries]) if entries else "its"
        why = ("unreadable, see the warnings" if "solves.jsonl" in run.unreadable_files
               else "empty or absent")
        return note(f"No Hessian solves recorded (solves.jsonl {why}; optimizer "
                    f"{run.optimizer}): {skipped} plots skipped.")
    parts = [p.draw(run, plots) for p in entries]
    if section in SECTION_TABLES:
        parts.append(SECTION_TABLES[section](run))
    return "".join(parts)


def run_body(run: RunData, plots: Plots, level: int = 2) -> str:
    """All sections of a run report (plots written through ``plots``; headings at ``level``)."""
    h = f"h{level}"
    parts: list[str] = [note(n) for n in run.notes]
    parts.append(f"<{h}>Summary</{h}>")
    parts.append(run_summary(run))
    parts.append(f"<{h}>{esc(RATES_HEADING)}</{h}>")
    parts.append(rates_html(run))
    for section in RUN_SECTIONS:
        parts.append(f"<{h}>{esc(section.heading)}</{h}>")
        parts.append(_section(run, section, plots))
    parts.append(f"<{h}>{esc(AMDAHL_HEADING)}</{h}>")
    parts.append(amdahl_html(run))
    parts.append(qlsa_output_section(run, h))
    parts.append(f"<{h}>Events</{h}>")
    parts.append(events_table(run))
    return "".join(parts)


def load_checked_run(d: Path) -> RunData:
    """The run in ``d`` with its integrity checked (warnings in ``run.warnings``)."""
    run = load_run(d)
    check_run(run)
    return run


def run_page(run: RunData) -> ReportPage:
    """The report page of a loaded, checked run; plots are written into its directory."""
    return ReportPage(f"qnewton run report — {run.path.name}", run_body(run, Plots(run.path)),
                      list(run.warnings), headline_html(run_headline(run)))


def run_report(d: Path) -> ReportPage:
    """The report of run directory ``d``; plots are written into ``d``."""
    return run_page(load_checked_run(d))
