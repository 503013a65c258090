"""The report of a comparison directory (``comparison.json``; its rows point at run directories).

The page tabulates the rows, draws every run's metric against step and against both clocks, the
three times of each run as grouped bars, and then each run's own report (plots written into the
comparison directory, prefixed with the run's label; the run directories are not written to).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qnewton.reports.figures import (
    CLASSICAL_COLOR,
    QUANTUM_COLOR,
    Plots,
    colors,
    new_figure,
    spans_decades,
)
from qnewton.reports.html import esc, fmt, kv_table, note, secs, slug, table
from qnewton.reports.reading import (
    RunData,
    comparison_runs,
    finite,
    load_comparison,
    total_of,
)
from qnewton.reports.run import run_body

RowAndRun = tuple[dict[str, Any], RunData | None]
#: A run with test evaluations to draw: its comparison row, its data, its line colour.
Curve = tuple[dict[str, Any], RunData, Any]


def _plot_metric_step(curves: list[Curve], metric: str, target: float | None,
                      plots: Plots) -> str:
    key = f"test_{metric}"
    fig, ax = new_figure()
    for row, run, c in curves:
        ev = [r for r in run.evaluations() if finite(r.get(key)) is not None]
        ax.plot([r["step"] for r in ev], [finite(r[key]) for r in ev], "o-", ms=3,
                color=c, label=str(row.get("label")))
    if target is not None:
        ax.axhline(target, color="black", ls=":", lw=1, label=f"target {fmt(target)}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"test {metric} vs step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return plots.save(fig, "comparison_metric_step.png",
                      f"test {metric} vs optimizer step, every run.")


def _plot_metric_time(curves: list[Curve], metric: str, target: float | None,
                      plots: Plots) -> str:
    """Metric against cumulative total seconds (left) and measured seconds (right)."""
    key = f"test_{metric}"
    fig, (ax1, ax2) = new_figure(2, width=11, height=4.4)
    all_t: list[float] = []
    for row, run, c in curves:
        ev = [r for r in run.evaluations() if finite(r.get(key)) is not None]
        tot = [(total_of(r), finite(r[key])) for r in ev if total_of(r) is not None]
        mea = [(finite(r.get("measured_seconds")), finite(r[key])) for r in ev
               if finite(r.get("measured_seconds")) is not None]
        all_t += [t for t, _ in tot] + [t for t, _ in mea]
        if tot:
            ax1.plot(*zip(*tot, strict=True), "o-", ms=3, color=c, label=str(row.get("label")))
        if mea:
            ax2.plot(*zip(*mea, strict=True), "s--", ms=3, color=c, label=str(row.get("label")))
    logx = spans_decades(all_t, 2)
    for ax, kind in ((ax1, "total seconds (measured − emulation + modeled)"),
                     (ax2, "measured seconds (wall clock)")):
        if target is not None:
            ax.axhline(target, color="black", ls=":", lw=1, label=f"target {fmt(target)}")
        if logx:
            # symlog keeps the evaluation at 0 s (before training) visible
            ax.set_xscale("symlog", linthresh=min(t for t in all_t if t > 0))
            ax.set_xlim(left=0)  # times are never negative
        ax.set_xlabel(f"cumulative {kind}")
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_title(f"test {metric} vs total time")
    ax2.set_title(f"test {metric} vs measured time")
    return plots.save(fig, "comparison_metric_time.png",
                      f"left: test {metric} vs cumulative total seconds (modeled on each "
                      "run's own profile, see the hardware column); right: vs measured "
                      "wall clock.")


def _plot_times(rows: list[dict[str, Any]], plots: Plots) -> str:
    """Measured, modeled and total seconds per run as three bars side by side (not stacked)."""
    series = [("measured (wall clock)", "measured_seconds", CLASSICAL_COLOR),
              ("modeled quantum (run's profile)", "modeled_quantum_seconds", "#9467bd"),
              ("total (measured − emulation + modeled)", "total_seconds", QUANTUM_COLOR)]
    fig, ax = new_figure(width=max(7.0, 1.4 * len(rows) + 3), height=4.6)
    x = np.arange(len(rows))
    w = 0.27
    allv: list[float] = []
    for i, (lab, key, c) in enumerate(series):
        v = [finite(r.get(key)) or 0.0 for r in rows]
        allv += v
        ax.bar(x + (i - 1) * w, v, w, color=c, label=lab)
    if spans_decades(allv, 2.5):
        ax.set_yscale("log")
    ax.set_xticks(x, labels=[str(r.get("label", "?")) for r in rows], rotation=20, ha="right",
                  fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("measured vs modeled vs total seconds per run")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return plots.save(fig, "comparison_times.png",
                      "per run: measured wall clock, modeled quantum seconds (each run's "
                      "own hardware profile) and total = measured − emulation + modeled "
                      "(three bars, not stacked).")


def comparison_plots(data: dict[str, Any], runs: list[RowAndRun], plots: Plots,
                     main_only: bool = False) -> str:
    """The comparison's plots; ``main_only`` leaves out metric-vs-step (for a reproduction)."""
    metric = data.get("metric") or "metric"
    target = finite(data.get("target"))
    parts = []
    curves = [(row, run, c) for (row, run), c in zip(runs, colors(len(runs)), strict=True)
              if run is not None and run.evaluations()]
    if not curves:
        parts.append(note("Metric curves skipped: no run directory with test evaluations."))
    else:
        if not main_only:
            parts.append(_plot_metric_step(curves, metric, target, plots))
        parts.append(_plot_metric_time(curves, metric, target, plots))
    if data["rows"]:
        parts.append(_plot_times(data["rows"], plots))
    return "".join(parts)


def comparison_table(data: dict[str, Any]) -> str:
    metric = data.get("metric") or "metric"
    rows = []
    for r in data["rows"]:
        rows.append([r.get("label", "?"), r.get("optimizer", "—"), r.get("hardware") or "—",
                     fmt(r.get("final_metric")), secs(r.get("measured_seconds")),
                     secs(r.get("modeled_quantum_seconds")), secs(r.get("total_seconds")),
                     secs(r.get("time_to_target_total")), secs(r.get("time_to_target_measured")),
                     fmt(r.get("quantum_solves")), fmt(r.get("classical_solves"))])
    return table(["run", "optimizer", "hardware profile", f"final test {metric}",
                  "measured s (wall clock)", "modeled quantum s (row's profile)",
                  "total s (measured − emulation + modeled)", "time to target (total)",
                  "time to target (measured)", "quantum solves", "classical solves"], rows)


def comparison_report(d: Path) -> tuple[str, str]:
    """(title, body) of the report of comparison directory ``d``."""
    notes: list[str] = []
    data = load_comparison(d)
    runs = comparison_runs(d, data, notes)
    metric = data.get("metric") or "metric"
    target = data.get("target")
    parts = [note(n) for n in notes]
    parts.append(kv_table([("task", data.get("task", "—")), ("metric", metric),
                           ("target", fmt(target) if target is not None else "none"),
                           ("runs", len(data["rows"]))]))
    parts.append("<h2>Runs</h2>" + comparison_table(data))
    parts.append("<h2>Curves and times</h2>")
    parts.append(comparison_plots(data, runs, Plots(d)))
    parts.append("<h2>Per-run reports</h2>")
    for row, run in runs:
        label = str(row.get("label", "?"))
        if run is None:
            parts.append(f"<details><summary>{esc(label)}</summary>"
                         f"{note('run directory not available')}</details>")
            continue
        body = run_body(run, Plots(d, prefix=f"run_{slug(label)}_"), level=3)
        parts.append(f"<details><summary>{esc(label)} — <code>{esc(row.get('run_dir'))}</code>"
                     f"</summary>{body}</details>")
    return f"qnewton comparison report — {data.get('task', d.name)}", "".join(parts)
