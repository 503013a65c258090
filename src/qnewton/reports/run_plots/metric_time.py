"""The test metric against cumulative time, on both clocks: total and measured."""

from __future__ import annotations

from qnewton.reports.figures import CLASSICAL_COLOR, QUANTUM_COLOR, Plots, new_figure, spans_decades
from qnewton.reports.html import note
from qnewton.reports.reading import RunData, finite, total_of


def plot_metric_time(run: RunData, plots: Plots) -> str:
    evals = run.evaluations()
    if not evals or not run.metric:
        return note("Metric-vs-time plot skipped: no test evaluation recorded in steps.jsonl.")
    key = f"test_{run.metric}"
    hw = run.hardware
    tot = [(total_of(r), finite(r[key])) for r in evals if total_of(r) is not None]
    mea = [(finite(r.get("measured_seconds")), finite(r[key])) for r in evals
           if finite(r.get("measured_seconds")) is not None]
    if not tot and not mea:
        return note("Metric-vs-time plot skipped: evaluation rows carry no times.")
    fig, ax = new_figure()
    logx = spans_decades([t for t, _ in tot] + [t for t, _ in mea], 2)
    dropped = 0
    if logx:
        n = len(tot) + len(mea)
        tot = [p for p in tot if p[0] > 0]
        mea = [p for p in mea if p[0] > 0]
        dropped = n - len(tot) - len(mea)
        ax.set_xscale("log")
    if tot:
        ax.plot(*zip(*tot, strict=True), "o-", color=QUANTUM_COLOR, ms=4,
                label=f"vs total seconds (measured − emulation + modeled on {hw})")
    if mea:
        ax.plot(*zip(*mea, strict=True), "s--", color=CLASSICAL_COLOR, ms=4,
                label="vs measured seconds (wall clock, incl. emulation)")
    ax.set_xlabel("cumulative seconds (line label says which kind)")
    ax.set_ylabel(f"test {run.metric}")
    ax.set_title(f"test {run.metric} vs cumulative time: total vs measured")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    cap = (f"test {run.metric} against cumulative total seconds (profile {hw}) and against "
           "cumulative measured seconds; two different clocks, drawn on one axis for comparison.")
    if dropped:
        cap += f" Log x axis: {dropped} point(s) at 0 s not shown."
    if tot and tot == mea:
        cap += (" Total = measured at every evaluation (nothing was emulated or modeled), so "
                "the two lines coincide.")
    return plots.save(fig, "metric_time.png", cap)
