"""Estimated and exact condition number κ of each Hessian block over training."""

from __future__ import annotations

from matplotlib.lines import Line2D

from qnewton.reports.figures import Plots, colors, new_figure
from qnewton.reports.html import note
from qnewton.reports.reading import RunData, finite, solve_step

#: Marker and legend text per ``kappa_kind`` of a solve (what the estimate guarantees).
KAPPA_MARKERS = {"upper": ("v", "upper bound"), "lower": ("^", "lower bound"),
                 "exact": ("o", "exact"), "estimate": ("s", "estimate")}


def _marker(kind: str) -> tuple[str, str]:
    return KAPPA_MARKERS.get(kind, ("D", kind))


def plot_kappa(run: RunData, plots: Plots) -> str:
    blocks = run.blocks()
    block_colors = dict(zip(blocks, colors(len(blocks)), strict=True))
    fig, ax = new_figure(width=9.5, height=4.6)
    kinds_seen: set[str] = set()
    skipped = 0
    n_exact = 0
    not_estimated: dict[str, int] = {}
    for b in blocks:
        rows = run.solves_of(b)
        for s in rows:  # decided without κ: a classical-only policy, a guaranteed rejection, ...
            if s.get("kappa_kind") == "not-estimated":
                reason = str(s.get("quantum_rejection") or s.get("kappa_method") or "unknown")
                not_estimated[reason] = not_estimated.get(reason, 0) + 1
        rows = [s for s in rows if s.get("kappa_kind") != "not-estimated"]
        for kind in sorted({str(s.get("kappa_kind", "estimate")) for s in rows}):
            pts = [(solve_step(s), finite(s.get("kappa"))) for s in rows
                   if str(s.get("kappa_kind", "estimate")) == kind]
            good = [p for p in pts if p[0] is not None and p[1] is not None and p[1] > 0]
            skipped += len(pts) - len(good)
            if good:
                kinds_seen.add(kind)
                ax.scatter(*zip(*good, strict=True), marker=_marker(kind)[0], s=26,
                           color=block_colors[b], alpha=0.85)
        exact = [(solve_step(s), finite(s.get("kappa_exact"))) for s in rows]
        exact = [p for p in exact if p[0] is not None and p[1] is not None and p[1] > 0]
        if exact:
            n_exact += len(exact)
            ax.plot(*zip(*exact, strict=True), "x--", color=block_colors[b], lw=1, ms=6)
    without = ""
    if not_estimated:
        without = note(f"{sum(not_estimated.values())} solve(s) decided without a κ estimate ("
                       + ", ".join(f"{k}: {v}" for k, v in sorted(not_estimated.items()))
                       + "): κ could not change their decision.")
    if not kinds_seen and not n_exact:
        return note("κ plot skipped: no finite positive κ in solves.jsonl.") + without
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("condition number κ")
    ax.set_title("κ per block over training")
    ax.grid(alpha=0.3, which="both")
    handles = [Line2D([], [], color=block_colors[b], lw=3, label=f"block {b}") for b in blocks]
    handles += [Line2D([], [], ls="", marker=_marker(k)[0], color="gray",
                       label=f"estimated κ: {_marker(k)[1]}")
                for k in sorted(kinds_seen)]
    if n_exact:
        handles.append(Line2D([], [], ls="--", marker="x", color="gray", label="exact κ"))
    # outside the axes: κ of many blocks fills the plot, a legend inside would hide some
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    cap = ("estimated κ per block (marker: upper bound ▼ / lower bound ▲ / exact ● / estimate ■) "
           "and exact κ (dashed, ×) where it was computed.")
    out = plots.save(fig, "kappa.png", cap)
    if not n_exact:
        out += note("No exact κ recorded (kappa_exact absent or null): only estimates shown.")
    if skipped:
        out += note(f"{skipped} κ estimate(s) not finite or not positive: not plotted.")
    return out + without
