"""Which solver each block went to at each step, with the fallbacks marked."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from qnewton.reports.figures import CLASSICAL_COLOR, NONE_COLOR, QUANTUM_COLOR, Plots, new_figure
from qnewton.reports.html import note
from qnewton.reports.reading import RunData, solve_step


def plot_routing(run: RunData, plots: Plots) -> str:
    blocks = run.blocks()
    steps = [st for st in (solve_step(s) for s in run.solves) if st is not None]
    if not steps:
        return note("Routing plot skipped: solves carry no step.")
    s0, s1 = min(steps), max(steps)
    # cell values index the colour map below: 0 no solve, 1 classical, 2 quantum
    grid = np.zeros((len(blocks), s1 - s0 + 1), dtype=float)
    row_of = {b: i for i, b in enumerate(blocks)}
    retry: list[tuple[int, int]] = []
    grad: list[tuple[int, int]] = []
    for s in run.solves:
        st = solve_step(s)
        if st is None:
            continue
        i = row_of[str(s.get("block", "?"))]
        grid[i, st - s0] = 2.0 if s.get("choice") == "quantum" else 1.0
        if s.get("fallback") == "retry":
            retry.append((st, i))
        elif s.get("fallback") == "gradient":
            grad.append((st, i))
    fig, ax = new_figure(width=9, height=max(2.4, 0.9 + 0.45 * len(blocks)))
    cmap = ListedColormap([NONE_COLOR, CLASSICAL_COLOR, QUANTUM_COLOR])
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=2.5, aspect="auto", interpolation="nearest",
              extent=(s0 - 0.5, s1 + 0.5, len(blocks) - 0.5, -0.5))
    for i in range(1, len(blocks)):  # white lines between the blocks' rows
        ax.axhline(i - 0.5, color="white", lw=1.5)
    if retry:
        ax.scatter(*zip(*retry, strict=True), marker="o", facecolors="none", edgecolors="black",
                   s=40, linewidths=1.4)
    if grad:
        ax.scatter(*zip(*grad, strict=True), marker="x", color="black", s=46, linewidths=1.8)
    ax.set_yticks(range(len(blocks)), labels=blocks, fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_title("routing per block and step")
    handles = [Patch(color=QUANTUM_COLOR, label="quantum (emulated; time modeled)"),
               Patch(color=CLASSICAL_COLOR, label="classical (time measured)"),
               Patch(color=NONE_COLOR, label="no solve")]
    if retry:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="black",
                              label="fallback: retry"))
    if grad:
        handles.append(Line2D([], [], ls="", marker="x", color="black",
                              label="fallback: gradient step"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    n_q = sum(1 for s in run.solves if s.get("choice") == "quantum")
    cap = (f"which solver each block went to at each step ({n_q} quantum, "
           f"{len(run.solves) - n_q} classical); fallbacks marked: {len(retry)} retry, "
           f"{len(grad)} gradient.")
    return plots.save(fig, "routing.png", cap)
