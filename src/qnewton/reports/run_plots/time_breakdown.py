"""Where the time goes: measured wall clock by phase, modeled quantum seconds, and their total.

Three bars side by side, never one stack of both clocks: measured phases in light colours (the
emulation of quantum solves hatched, since the total removes it), modeled seconds in dark hatched
ones, and the total = measured − emulation + modeled built from the same segments.
"""

from __future__ import annotations

import math

import matplotlib

from qnewton.reports.figures import Plots, new_figure
from qnewton.reports.html import MEASURED, note
from qnewton.reports.reading import RunData, finite

#: Order of the training phases in the measured bar (phases not listed follow, as recorded).
PHASE_ORDER = ("forward_backward", "curvature", "conditioning", "estimation", "scheduling",
               "solve", "update")
MODELED_COLORS = ["#4b2a7b", "#7b2a4b", "#2a4b7b", "#2a7b4b"]


def _measured_segments(vals: dict, measured: float, emul: float, source: str
                       ) -> tuple[list[tuple[str, float]], str]:
    """(phase, seconds) segments of the measured bar without emulation, and a note if the run
    recorded no per-phase split."""
    phases = vals.get("measured_by_phase") if isinstance(vals.get("measured_by_phase"),
                                                         dict) else None
    if not phases:
        return [("measured (no per-phase split)", max(measured - emul, 0.0))], note(
            f"No per-phase times ({source} has no measured_by_phase): the measured bar "
            "is one segment.")
    names = [p for p in PHASE_ORDER if p in phases] + [p for p in phases if p not in PHASE_ORDER]
    vals_ph = {p: finite(phases[p]) or 0.0 for p in names}
    # emulation happens inside the solve phase: carve it out so it is shown separately
    left = emul
    if "solve" in vals_ph:
        cut = min(left, vals_ph["solve"])
        vals_ph["solve"] -= cut
        left -= cut
    other = measured - sum(vals_ph.values()) - emul
    if other > 1e-9 * max(measured, 1.0):
        vals_ph["other (not in a phase)"] = other
    segs = [(f"{p} (excl. emulation)" if p == "solve" and emul > 0 else p, v)
            for p, v in vals_ph.items() if v > 0]
    return segs, ""


def _label_segments(ax, segs: list[tuple[str, float]], measured: float, top: float) -> None:
    """Name the measured segments tall enough to hold a label (phase and share of measured)."""
    bottom = 0.0
    for name, v in segs:
        if top > 0 and v >= 0.07 * top and measured > 0:
            ax.text(0, bottom + v / 2, f"{name.split(' (')[0]} {100 * v / measured:.0f}%",
                    ha="center", va="center", fontsize=7)
        bottom += v


def _finish(ax, bars: list[tuple[int, float, str]]) -> None:
    """Ticks, limits and value labels of the bars ``(x, height, tick label)`` on ``ax``."""
    ax.set_xticks([x for x, _, _ in bars], labels=[t for _, _, t in bars], fontsize=8)
    top = max(h for _, h, _ in bars)
    if top > 0:
        ax.set_ylim(0, top * 1.1)
    for x, height, _ in bars:
        ax.annotate(f"{height:.3g} s", (x, height), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("seconds")
    ax.grid(alpha=0.3, axis="y")


def split_caption(measured_kept: float, modeled: float) -> str:
    """What the split figure shows, from its numbers: which of the two clocks is too small to see
    in the total bar (the one that is orders of magnitude below the other)."""
    small, large = ("modeled", "measured") if modeled < measured_kept else ("measured", "modeled")
    ratio = max(measured_kept, modeled) / max(min(measured_kept, modeled), 1e-300)
    return (f"The {large} seconds ({max(measured_kept, modeled):.3g} s) are {ratio:.3g}× the "
            f"{small} ones ({min(measured_kept, modeled):.3g} s), so the measured bar has a panel "
            f"and scale of its own; in the total the {small} part is too thin to see.")


def plot_time_breakdown(run: RunData, plots: Plots) -> str:
    vals, source = run.final_values()
    hw = run.hardware
    measured = finite(vals.get("measured_seconds"))
    if measured is None:
        return note("Time breakdown skipped: no measured seconds recorded.")
    emul = finite(vals.get("emulation_seconds")) or 0.0
    modeled = finite(vals.get("modeled_quantum_seconds")) or 0.0
    segs, remark = _measured_segments(vals, measured, emul, source)
    by_profile = vals.get("modeled_by_profile")
    if isinstance(by_profile, dict) and by_profile:
        model_segs = [(f"modeled quantum: {k}", finite(v) or 0.0)
                      for k, v in by_profile.items()]
    else:
        model_segs = [(f"modeled quantum: {hw}", modeled)]
    sum_q = sum(v for _, v in model_segs)
    # Orders of magnitude apart: the measured bar gets a panel (and scale) of its own, or it
    # would be a hairline next to the modeled one.
    split = sum_q > 0 and measured > 0 and abs(math.log10(sum_q / measured)) > 0.7
    if split:
        fig, (ax_m, ax_q) = new_figure(2, width=10, height=4.8, width_ratios=[1, 2])
    else:
        fig, ax_m = new_figure(width=9, height=4.8)
        ax_q = ax_m
    pastel = matplotlib.colormaps["Pastel1" if len(segs) <= 9 else "Set3"]
    seg_colors = [pastel(i % pastel.N) for i in range(len(segs))]
    labels = [f"{MEASURED.split(' (')[0]}\n(wall clock)", f"modeled\n(profile {hw})",
              "total\n(measured − emulation\n+ modeled)"]
    bottom_m = bottom_t = 0.0
    for (name, v), c in zip(segs, seg_colors, strict=True):
        ax_m.bar(0, v, bottom=bottom_m, color=c, label=f"measured: {name}")
        ax_q.bar(2, v, bottom=bottom_t, color=c)
        bottom_m += v
        bottom_t += v
    if emul > 0:
        ax_m.bar(0, emul, bottom=bottom_m, color="white", edgecolor="gray", hatch="//",
                 label="measured: emulation of quantum solves (removed from total)")
        bottom_m += emul
    bottom_q = 0.0
    for i, (name, v) in enumerate(model_segs):
        c = MODELED_COLORS[i % len(MODELED_COLORS)]
        ax_q.bar(1, v, bottom=bottom_q, color=c, hatch="..", edgecolor="white", label=name)
        ax_q.bar(2, v, bottom=bottom_t, color=c, hatch="..", edgecolor="white")
        bottom_q += v
        bottom_t += v
    bars = [(0, bottom_m, labels[0]), (1, bottom_q, labels[1]), (2, bottom_t, labels[2])]
    if split:
        _finish(ax_m, bars[:1])
        _finish(ax_q, bars[1:])
        ax_m.set_title("measured (own scale)")
        ax_q.set_title("modeled and total")
        fig.suptitle("where the time goes: measured vs modeled vs total")
        ax_m.set_xlim(-0.8, 0.8)
    else:
        _finish(ax_m, bars)
        ax_m.set_title("where the time goes: measured vs modeled vs total")
    _label_segments(ax_m, segs, measured, bottom_m if split else max(h for _, h, _ in bars))
    handles, names = ax_m.get_legend_handles_labels()
    if split:
        more = ax_q.get_legend_handles_labels()
        handles, names = handles + more[0], names + more[1]
    ax_q.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    cap = (f"left: measured wall clock by phase (emulation hatched); "
           f"{'right' if split else 'middle'}: modeled quantum seconds (profile {hw})"
           f"{' and' if split else '; right:'} total = measured − emulation + modeled. "
           f"Source: {source}.")
    if split:
        cap += " " + split_caption(measured - emul, sum_q)
    return plots.save(fig, "time_breakdown.png", cap) + remark
