"""The report of a comparison directory (``comparison.json``; its rows point at run directories).

The page tabulates the rows, then draws every run's training loss and test metric against the
step and against both clocks, and the three times of each run as grouped horizontal bars. Each
run gets its own report written into its run directory (as ``qnewton report RUN_DIR`` would);
the comparison page shows each run's headline with a link to that report instead of repeating
it. Integrity warnings of the runs, and rows that disagree with their run's summary, are listed
at the top.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from matplotlib.lines import Line2D

from qnewton.reports.figures import (
    CLASSICAL_COLOR,
    QUANTUM_COLOR,
    Plots,
    colors,
    new_figure,
    spans_decades,
)
from qnewton.reports.headline import headline_html, run_headline
from qnewton.reports.html import REPORT_NAME, ReportPage, esc, fmt, kv_table, note, secs, table
from qnewton.reports.integrity import check_comparison_row, check_run
from qnewton.reports.reading import (
    RunData,
    comparison_runs,
    finite,
    load_comparison,
    total_of,
)
from qnewton.reports.run import run_page

RowAndRun = tuple[dict[str, Any], RunData | None]
#: Fewer test evaluations than this and a run's metric is not a curve: the loss is drawn too.
MIN_CURVE_POINTS = 3
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


class Curve:
    """One run's lines: its label, data and a style (colour, dash and marker) of its own, so
    that runs with identical curves stay distinguishable where they overlap."""

    def __init__(self, label: str, run: RunData, index: int, color: Any) -> None:
        self.label = label
        self.run = run
        self.style = {"color": color, "ls": LINESTYLES[index % len(LINESTYLES)],
                      "marker": MARKERS[index % len(MARKERS)]}

    def evaluations(self, key: str) -> list[dict[str, Any]]:
        return [r for r in self.run.evaluations() if finite(r.get(key)) is not None]

    def train_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.run.steps
                if finite(r.get("loss")) is not None and not r.get("initial")]

    def handle(self) -> Line2D:
        return Line2D([], [], lw=1.5, ms=5, label=short_label(self.label), **self.style)


def short_label(label: str, width: int = 22) -> str:
    """A run label wrapped onto lines of at most ``width`` characters (at ``@``/``-`` if it can),
    so tick labels and legends never run into each other."""
    if len(label) <= width:
        return label
    spaced = label.replace("@", " @").replace("-", "- ")
    return "\n".join(line.replace("- ", "-").replace(" @", "@") for line in
                     textwrap.wrap(spaced, width, break_long_words=True))


def _plot(ax: Any, pts: list[tuple[float, float]], curve: Curve, n_points: int) -> None:
    """A run's line; markers only where the points are few enough to see."""
    if not pts:
        return
    style = dict(curve.style)
    if len(pts) > 40:
        style["marker"] = None
    ax.plot(*zip(*pts, strict=True), lw=1.4, ms=4 if n_points <= 40 else 0, alpha=0.9, **style)


def off_scale(ends: dict[str, float], decades: float = 3.0) -> set[str]:
    """Runs whose cumulative time ends so far beyond the others' (a gap of more than
    ``decades`` between neighbouring run end times) that drawing them would crush the rest
    into one corner; only a minority of the runs is ever cut."""
    pos = sorted((t, label) for label, t in ends.items() if t > 0)
    if len(pos) < 2:
        return set()
    gap, i = max((math.log10(pos[k + 1][0] / pos[k][0]), k) for k in range(len(pos) - 1))
    above = pos[i + 1:]
    if gap < decades or len(above) * 2 >= len(pos):
        return set()
    return {label for _, label in above}


def _x_limits(times: list[float], log: bool) -> tuple[float, float] | None:
    """x limits that hold ``times`` (positive ones on a log axis) with a small margin."""
    if log:
        pos = [t for t in times if t > 0]
        return (min(pos) / 1.5, max(pos) * 1.5) if pos else None
    return (min(0.0, min(times)), max(times) * 1.05 or 1.0) if times else None


def _value_axis(ax: Any, values: list[float], label: str) -> None:
    if spans_decades(values, 2.0) and all(v > 0 for v in values):
        ax.set_yscale("log")
        label += " (log scale)"
    ax.set_ylabel(label)


def _legend(fig: Any, curves: list[Curve], extra: list[Line2D] = ()) -> None:
    handles = [c.handle() for c in curves] + list(extra)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)),
               fontsize=8, frameon=False)


def identical_curves(curves: list[Curve], key: str) -> list[list[str]]:
    """Groups of run labels whose test-metric curves are identical (they overlap exactly)."""
    groups: dict[tuple, list[str]] = {}
    for c in curves:
        pts = tuple((r["step"], finite(r[key])) for r in c.evaluations(key))
        if pts:
            groups.setdefault(pts, []).append(c.label)
    return [g for g in groups.values() if len(g) > 1]


def _plot_step(curves: list[Curve], metric: str, target: float | None, plots: Plots) -> str:
    """Training loss (every step) and test metric (every evaluation) against the step."""
    key = f"test_{metric}"
    fig, (ax1, ax2) = new_figure(2, width=11, height=4.6 + 0.25 * ((len(curves) + 3) // 4))
    losses: list[float] = []
    values: list[float] = []
    for c in curves:
        rows = c.train_rows()
        losses += [finite(r["loss"]) for r in rows]
        _plot(ax1, [(r["step"], finite(r["loss"])) for r in rows], c, len(rows))
        ev = c.evaluations(key)
        values += [finite(r[key]) for r in ev]
        _plot(ax2, [(r["step"], finite(r[key])) for r in ev], c, len(ev))
    extra = []
    if target is not None:
        ax2.axhline(target, color="black", ls=":", lw=1)
        extra.append(Line2D([], [], color="black", ls=":", lw=1, label=f"target {fmt(target)}"))
    _value_axis(ax1, losses, "training loss (batch)")
    _value_axis(ax2, values, f"test {metric}")
    ax1.set_title("training loss at every step")
    ax2.set_title(f"test {metric} at each evaluation")
    for ax in (ax1, ax2):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    _legend(fig, curves, extra)
    return plots.save(fig, "comparison_metric_step.png",
                      f"left: training loss of each step's batch; right: test {metric} at each "
                      "evaluation (step 0 = before training). Each run has its own colour, dash "
                      "and marker, so overlapping runs stay visible.")


def _plot_time(curves: list[Curve], metric: str, target: float | None, plots: Plots,
               with_loss: bool) -> str:
    """Test metric (and, with ``with_loss``, training loss) against both cumulative clocks."""
    key = f"test_{metric}"
    nrows = 2 if with_loss else 1
    fig, axes = new_figure(2, width=11, height=3.9 * nrows + 0.6 + 0.25 * ((len(curves) + 3) // 4),
                           nrows=nrows, squeeze=False)
    clocks = (("total", total_of, "cumulative total seconds (measured − emulation + modeled)"),
              ("measured", lambda r: finite(r.get("measured_seconds")),
               "cumulative measured seconds (wall clock)"))
    dropped_zero = False
    cut_notes: list[str] = []
    panels = [("test", key, f"test {metric}", lambda c: c.evaluations(key))]
    if with_loss:
        panels.append(("loss", "loss", "training loss (batch)", Curve.train_rows))
    for col, (name, clock, xlabel) in enumerate(clocks):
        # One scale per clock, for both rows. A lone far-out run is put off scale first. Log
        # only when the times drawn span more than two decades *and* the runs' durations differ
        # by more than one (else a log axis would only stretch out everyone's first steps).
        ends = {c.label: t for c in curves if (t := clock(c.run.steps[-1])) is not None}
        cut = off_scale(ends)
        if cut:
            cut_notes.append(f"{name} seconds: " + ", ".join(
                f"{lab} (to {fmt(ends[lab], 2)} s)" for lab in sorted(cut, key=ends.get)))
        shown = [clock(r) for c in curves if c.label not in cut
                 for _, _, _, rows_of in panels for r in rows_of(c)]
        log = (spans_decades([t for t in shown if t is not None], 2.0)
               and spans_decades([t for lab, t in ends.items() if lab not in cut], 1.0))
        drawn: list[tuple[Any, list[tuple[Curve, list[tuple[float, float]]]]]] = []
        kept: list[float] = []
        for row_i, (_kind, ykey, _ylabel, rows_of) in enumerate(panels):
            ax = axes[row_i][col]
            series = []
            for c in curves:
                pts = [(clock(r), finite(r[ykey])) for r in rows_of(c)]
                pts = [(t, v) for t, v in pts if t is not None]
                if log:
                    dropped_zero |= any(t <= 0 for t, _ in pts)
                    pts = [(t, v) for t, v in pts if t > 0]
                series.append((c, pts))
                if c.label not in cut:
                    kept += [t for t, _ in pts]
            drawn.append((ax, series))
        limits = _x_limits(kept, log)
        for (ax, series), (kind, _, ylabel, _) in zip(drawn, panels, strict=True):
            if log:
                ax.set_xscale("log")
            values = []
            for c, pts in series:
                values += [v for t, v in pts if c.label not in cut or limits is None
                           or t <= limits[1]]
                _plot(ax, pts, c, len(pts))
            if limits is not None:
                ax.set_xlim(*limits)
            if cut:
                ax.text(0.99, 0.02, "off scale →\n" + "\n".join(sorted(cut, key=ends.get)),
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#999"})
            if kind == "test" and target is not None:
                ax.axhline(target, color="black", ls=":", lw=1)
            _value_axis(ax, values, ylabel)
            ax.set_xlabel(xlabel + (" (log scale)" if log else ""))
            ax.set_title(f"{ylabel} vs {name} time")
            ax.grid(alpha=0.3, which="both" if log else "major")
    extra = ([Line2D([], [], color="black", ls=":", lw=1, label=f"target {fmt(target)}")]
             if target is not None else [])
    _legend(fig, curves, extra)
    cap = (f"test {metric}{' (top) and training loss (bottom)' if with_loss else ''} against "
           "cumulative total seconds (left; modeled on each run's own profile, see the hardware "
           "column) and measured wall clock (right).")
    if dropped_zero:
        cap += " Log time axis: the points at 0 s (before training) are not shown."
    if cut_notes:
        cap += (" Off scale, so that the other runs stay readable (their points beyond the axis "
                "are not drawn): " + "; ".join(cut_notes) + ".")
    return plots.save(fig, "comparison_metric_time.png", cap)


def _plot_times(rows: list[dict[str, Any]], plots: Plots) -> str:
    """Measured, modeled and total seconds per run as horizontal bars (never stacked)."""
    series = [("measured (wall clock)", "measured_seconds", CLASSICAL_COLOR),
              ("modeled quantum (run's profile)", "modeled_quantum_seconds", "#9467bd"),
              ("total (measured − emulation + modeled)", "total_seconds", QUANTUM_COLOR)]
    n = len(rows)
    fig, ax = new_figure(width=10, height=1.4 + 0.75 * n)
    y = np.arange(n)
    h = 0.26
    allv = [v for r in rows for _, key, _ in series if (v := finite(r.get(key))) is not None]
    log = spans_decades(allv, 2.0)
    positive = [v for v in allv if v > 0]
    floor = min(positive) / 3 if log and positive else 0.0
    for i, (lab, key, c) in enumerate(series):
        ys = y + (i - 1) * h
        vals = [finite(r.get(key)) for r in rows]
        ax.barh(ys, [v if v is not None and v > 0 else 0.0 for v in vals], h, color=c,
                label=lab, left=floor if log else 0.0)
        for yy, v in zip(ys, vals, strict=True):
            text = "—" if v is None else ("0 s" if v == 0 else f"{fmt(v, 3)} s")
            x = max(v, floor) if v is not None and log else (v or 0.0)
            ax.annotate(text, (x, yy), xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=7)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left=floor, right=max(positive) * 30)
    else:
        ax.set_xlim(0, (max(allv) if allv else 1.0) * 1.18 or 1.0)
    ax.set_yticks(y, labels=[short_label(str(r.get("label", "?"))) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds" + (" (log scale)" if log else ""))
    ax.set_title("measured vs modeled vs total seconds per run")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    ax.grid(alpha=0.3, axis="x", which="both" if log else "major")
    return plots.save(fig, "comparison_times.png",
                      "per run: measured wall clock, modeled quantum seconds (each run's "
                      "own hardware profile) and total = measured − emulation + modeled "
                      "(three bars, not stacked; each bar labelled with its value).")


def comparison_plots(data: dict[str, Any], runs: list[RowAndRun], plots: Plots,
                     main_only: bool = False) -> str:
    """The comparison's plots; ``main_only`` leaves out the step plot (for a reproduction)."""
    metric = data.get("metric") or "metric"
    key = f"test_{metric}"
    target = finite(data.get("target"))
    parts = []
    present = [(row, run) for row, run in runs if run is not None]
    curves = [Curve(str(row.get("label", "?")), run, i, c) for i, ((row, run), c)
              in enumerate(zip(present, colors(len(present)), strict=True))
              if run.steps]
    with_metric = [c for c in curves if c.evaluations(key)]
    if not curves:
        parts.append(note("Curves skipped: no run directory with steps to draw."))
    else:
        few = [c for c in curves if len(c.evaluations(key)) < MIN_CURVE_POINTS]
        if few:
            parts.append(note(
                f"{', '.join(c.label for c in few)}: fewer than {MIN_CURVE_POINTS} test "
                f"evaluations (the test set is evaluated at epoch ends unless --eval-every is "
                f"given), so the test-{metric} points are not a curve; the training loss of "
                "every step is drawn against both clocks as well."))
        if not main_only:
            parts.append(_plot_step(curves, metric, target, plots))
        if with_metric or few:
            parts.append(_plot_time(curves, metric, target, plots, with_loss=bool(few)))
        for group in identical_curves(with_metric, key):
            parts.append(note(f"{', '.join(group)} have identical test-{metric} curves: their "
                              "lines lie on top of each other (told apart by dash and marker)."))
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


def _run_card(row: dict[str, Any], run: RunData | None, warnings: list[str]) -> str:
    """A run's headline and a link to its own report (written into its run directory)."""
    label = str(row.get("label", "?"))
    rd = str(row.get("run_dir") or "")
    head = f"<h3>{esc(label)}</h3>"
    if run is None:
        return f"<div class='card'>{head}{note('run directory not available')}</div>"
    try:
        out = run.path / REPORT_NAME
        out.write_text(run_page(run).html(), encoding="utf-8")
        link = (f"<p><a href='{esc(quote(f'{rd}/{REPORT_NAME}'))}'>full report: "
                f"<code>{esc(rd)}/{REPORT_NAME}</code></a>"
                + (f" ({len(run.warnings)} warning{'s' if len(run.warnings) > 1 else ''})"
                   if run.warnings else "") + "</p>")
    except OSError as exc:
        warnings.append(f"{rd}: its own report could not be written ({exc.strerror or exc}); "
                        f"run `qnewton report {rd}` from a writable copy.")
        link = note("no report written for this run (see the warnings).")
    return f"<div class='card'>{head}{link}{headline_html(run_headline(run))}</div>"


def comparison_report(d: Path) -> ReportPage:
    """The report of comparison directory ``d`` (and of each of its runs, in their dirs)."""
    warnings: list[str] = []
    data = load_comparison(d, warnings)
    runs = comparison_runs(d, data, warnings)
    metric = data.get("metric") or "metric"
    for row, run in runs:
        if run is None:
            continue
        check_run(run)
        warnings += [f"{row.get('run_dir')}: {w}" for w in run.warnings]
        warnings += check_comparison_row(row, run, data.get("metric"))
    target = data.get("target")
    parts = [kv_table([("task", data.get("task", "—")), ("metric", metric),
                       ("target", fmt(target) if target is not None else "none"),
                       ("runs", len(data["rows"]))])]
    parts.append("<h2>Runs</h2>" + comparison_table(data))
    parts.append("<h2>Curves and times</h2>")
    parts.append(comparison_plots(data, runs, Plots(d)))
    if runs:
        parts.append("<h2>Each run</h2><p>Each run's headline; its full report (plots, "
                     "per-block table, events) is written into its own directory and linked."
                     "</p>")
        parts.append("<div class='cards'>" + "".join(
            _run_card(row, run, warnings) for row, run in runs) + "</div>")
    return ReportPage(f"qnewton comparison report — {data.get('task', d.name)}",
                      "".join(parts), warnings)


__all__ = ["comparison_report", "comparison_plots", "comparison_table", "short_label",
           "identical_curves"]
