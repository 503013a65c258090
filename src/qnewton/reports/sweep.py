"""The report of a sweep directory (``sweep.json``: one row per swept value, optionally a
classical baseline).

Plots: the final metric, the three times and the quantum share of solves against the swept
value; for a gate-time sweep with a baseline, also the crossover — the gate time at which the
sweep's total seconds meet the baseline's (:func:`qnewton.experiments.crossover.find_crossovers`,
the one definition the CLI uses too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qnewton.experiments.crossover import find_crossovers
from qnewton.reports.figures import (
    CLASSICAL_COLOR,
    QUANTUM_COLOR,
    Plots,
    new_figure,
    spans_decades,
)
from qnewton.reports.html import ReportPage, esc, fmt, kv_table, note, secs, table
from qnewton.reports.reading import finite, load_sweep, quantum_share


@dataclass(frozen=True)
class SweepFrame:
    """What every plot of one sweep shares: the swept parameter, its axis, and the baseline."""

    param: str
    xlabel: str
    logx: bool
    optimizer: Any
    metric: str
    base_label: str
    base_total: float | None
    base_metric: float | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> SweepFrame:
        param = str(data.get("param", "value"))
        base = data.get("baseline") if isinstance(data.get("baseline"), dict) else None
        vals = [finite(r["value"]) for r in data["rows"]]
        return cls(
            param=param,
            xlabel="gate time (s)" if param == "gate-time" else param,
            logx=spans_decades(vals, 1.5) and all(v > 0 for v in vals),
            optimizer=data.get("optimizer"),
            metric=data.get("metric") or "metric",
            base_label=str(base.get("label", "baseline")) if base else "baseline",
            base_total=finite(base.get("total_seconds")) if base else None,
            base_metric=finite(base.get("final_metric")) if base else None,
        )


def _plot_metric(rows: list[dict[str, Any]], frame: SweepFrame, plots: Plots) -> str:
    mv = [(finite(r["value"]), finite(r.get("final_metric"))) for r in rows]
    mv = [p for p in mv if p[1] is not None]
    if not mv:
        return note("Metric plot skipped: no row has a final_metric.")
    metric, param = frame.metric, frame.param
    fig, ax = new_figure()
    ax.plot(*zip(*mv, strict=True), "o-", color="#2ca02c", label=f"{frame.optimizer}")
    if frame.base_metric is not None:
        ax.axhline(frame.base_metric, color="black", ls="--", lw=1,
                   label=f"{frame.base_label} (classical baseline)")
    if frame.logx:
        ax.set_xscale("log")
    ax.set_xlabel(frame.xlabel)
    ax.set_ylabel(f"final test {metric}")
    ax.set_title(f"final test {metric} vs {param}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return plots.save(fig, "sweep_metric.png", f"final test {metric} vs {param}.")


def _plot_times(rows: list[dict[str, Any]], frame: SweepFrame, plots: Plots) -> str:
    fig, ax = new_figure()
    series = (("measured (wall clock)", "measured_seconds", CLASSICAL_COLOR, "s--"),
              ("modeled quantum (sweep's profile)", "modeled_quantum_seconds", "#9467bd", "^:"),
              ("total (measured − emulation + modeled)", "total_seconds", QUANTUM_COLOR, "o-"))
    allv = [t for r in rows for _, key, _, _ in series
            if (t := finite(r.get(key))) is not None]
    if frame.base_total is not None:
        allv.append(frame.base_total)
    logy = spans_decades(allv, 2)
    hidden = 0
    for lab, key, c, m in series:
        pts = [(finite(r["value"]), finite(r.get(key))) for r in rows]
        pts = [p for p in pts if p[1] is not None]
        if logy:
            hidden += sum(1 for p in pts if p[1] <= 0)
            pts = [p for p in pts if p[1] > 0]
        if pts:
            ax.plot(*zip(*pts, strict=True), m, label=lab, color=c)
    if frame.base_total is not None:
        ax.axhline(frame.base_total, color="black", ls="--", lw=1,
                   label=f"{frame.base_label}: total seconds (classical baseline)")
    if frame.logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(frame.xlabel)
    ax.set_ylabel("seconds")
    ax.set_title(f"time vs {frame.param}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    cap = (f"measured, modeled and total seconds of each run vs {frame.param} (the modeled "
           "times use the profile the sweep ran on).")
    if hidden:
        cap += f" Log y axis: {hidden} zero value(s) not shown."
    return plots.save(fig, "sweep_times.png", cap)


def _crossover_text(tv: list[tuple[float, float]], crossings: list[float],
                    frame: SweepFrame) -> str:
    base_total = frame.base_total
    if crossings:
        return (
            "<p class='legend'><b>Crossover gate time ≈ "
            + ", ".join(f"<span class='crossover'>{c:.3e}</span>" for c in crossings)
            + f" s</b>: the sweep's total seconds (measured − emulation + modeled) fall "
            f"below the classical baseline {esc(frame.base_label)} "
            f"({secs(base_total)} total) for gate times "
            f"{'below' if tv[0][1] < base_total else 'above'} this value "
            "(log-log interpolation between neighbouring swept values).</p>")
    if any(t < base_total for _, t in tv):
        return note(f"No crossover in the swept range: total seconds are below the baseline "
                    f"({secs(base_total)}) at every swept gate time.")
    return note(f"No crossover in the swept range: total seconds stay above the baseline "
                f"({secs(base_total)}) at every swept gate time "
                f"({fmt(tv[0][0])} … {fmt(tv[-1][0])} s).")


def _crossover(rows: list[dict[str, Any]], frame: SweepFrame, plots: Plots
               ) -> tuple[str, str]:
    """(plot html, crossover html) of a gate-time sweep."""
    tv = [(finite(r["value"]), finite(r.get("total_seconds"))) for r in rows]
    tv = [p for p in tv if p[1] is not None]
    base_total = frame.base_total
    if base_total is None:
        return "", note("No classical baseline in sweep.json: crossover not computed.")
    if not tv:
        return "", note("No total_seconds in the sweep rows: crossover not computed.")
    crossings = find_crossovers([v for v, _ in tv], [t for _, t in tv], base_total)
    text = _crossover_text(tv, crossings, frame)
    fig, ax = new_figure()
    ax.loglog(*zip(*[p for p in tv if p[0] > 0 and p[1] > 0], strict=True), "o-",
              color=QUANTUM_COLOR, label=f"{frame.optimizer}: total seconds")
    ax.axhline(base_total, color="black", ls="--", lw=1,
               label=f"{frame.base_label}: total seconds (classical baseline)")
    for c in crossings:
        ax.axvline(c, color="#2ca02c", ls=":", lw=1.2)
        ax.plot([c], [base_total], "*", color="#2ca02c", ms=14, label=f"crossover ≈ {c:.3g} s")
    ax.set_xlabel("gate time (s)")
    ax.set_ylabel("total seconds (measured − emulation + modeled)")
    ax.set_title("total training time vs gate time")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return plots.save(fig, "sweep_crossover.png", "log-log total seconds vs gate time; dashed: "
                      "classical baseline; star: crossover."), text


def _plot_quantum_share(rows: list[dict[str, Any]], frame: SweepFrame, plots: Plots) -> str:
    sh = [(finite(r["value"]), quantum_share(r)) for r in rows]
    sh = [p for p in sh if p[1] is not None]
    if not sh:
        return note("Quantum-share plot skipped: no row has any solves recorded.")
    fig, ax = new_figure()
    ax.plot(*zip(*sh, strict=True), "o-", color="#9467bd")
    if frame.logx:
        ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(frame.xlabel)
    ax.set_ylabel("quantum share of solves")
    ax.set_title(f"share of block solves routed quantum vs {frame.param}")
    ax.grid(alpha=0.3, which="both")
    return plots.save(fig, "sweep_quantum_share.png",
                      f"quantum solves / (quantum + classical solves) vs {frame.param}.")


def sweep_parts(data: dict[str, Any], plots: Plots) -> tuple[str, str]:
    """(plots html, crossover html) of a sweep; the crossover only for a gate-time sweep."""
    rows = data["rows"]
    if not rows:
        return note("sweep.json has no rows with a numeric value: nothing to plot."), ""
    frame = SweepFrame.of(data)
    parts = [_plot_metric(rows, frame, plots), _plot_times(rows, frame, plots)]
    cross_html = ""
    if frame.param == "gate-time":
        cross_plot, cross_html = _crossover(rows, frame, plots)
        parts.append(cross_plot)
    parts.append(_plot_quantum_share(rows, frame, plots))
    return "".join(parts), cross_html


def sweep_table(data: dict[str, Any]) -> str:
    metric = data.get("metric") or "metric"
    rows = []
    for r in data["rows"]:
        share = quantum_share(r)
        rows.append([fmt(r.get("value")), fmt(r.get("final_metric")),
                     secs(r.get("measured_seconds")), secs(r.get("modeled_quantum_seconds")),
                     secs(r.get("total_seconds")), fmt(r.get("quantum_solves")),
                     fmt(r.get("classical_solves")),
                     "—" if share is None else f"{100 * share:.1f}%", r.get("run_dir") or "—"])
    return table([str(data.get("param", "value")), f"final test {metric}",
                  "measured s (wall clock)", "modeled quantum s", "total s (measured − "
                  "emulation + modeled)", "quantum solves", "classical solves", "quantum share",
                  "run dir"], rows)


def sweep_report(d: Path) -> ReportPage:
    """The report of sweep directory ``d``."""
    warnings: list[str] = []
    data = load_sweep(d, warnings)
    base = data.get("baseline") if isinstance(data.get("baseline"), dict) else None
    parts = [kv_table([
        ("task", data.get("task", "—")), ("swept parameter", data.get("param", "—")),
        ("optimizer", data.get("optimizer", "—")), ("metric", data.get("metric", "—")),
        ("values", ", ".join(fmt(v) for v in data.get("values", []) or [])),
        ("classical baseline", "none" if base is None else
         f"{base.get('label', 'baseline')}: total {secs(base.get('total_seconds'))}, final "
         f"metric {fmt(base.get('final_metric'))}"),
    ])]
    plots_html, cross_html = sweep_parts(data, Plots(d))
    if cross_html:
        parts.append("<h2>Crossover</h2>" + cross_html)
    parts.append("<h2>Rows</h2>" + sweep_table(data))
    parts.append("<h2>Plots</h2>" + plots_html)
    title = f"qnewton sweep report — {data.get('param', '?')} on {data.get('task', d.name)}"
    return ReportPage(title, "".join(parts), warnings)
