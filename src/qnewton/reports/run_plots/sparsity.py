"""Row sparsity d and dimension N of the matrix each block actually solved, per step."""

from __future__ import annotations

from typing import Any

from qnewton.reports.figures import Plots, colors, new_figure, spans_decades
from qnewton.reports.html import note
from qnewton.reports.reading import RunData, finite, solve_step


def _last_per_step(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """One point per step: ``key`` of the last solve the block recorded at that step."""
    by_step: dict[int, float] = {}
    for s in rows:
        st, v = solve_step(s), finite(s.get(key))
        if st is not None and v is not None:
            by_step[st] = v
    return sorted(by_step.items())


def plot_sparsity(run: RunData, plots: Plots) -> str:
    blocks = run.blocks()
    fig, (ax1, ax2) = new_figure(2, width=10, height=4.2 + 0.2 * ((len(blocks) + 5) // 6))
    any_d = any_n = False
    all_d: list[float] = []
    all_n: list[float] = []
    for b, c in zip(blocks, colors(len(blocks)), strict=True):
        rows = run.solves_of(b)
        dd, nn = _last_per_step(rows, "d"), _last_per_step(rows, "n")
        if dd:
            any_d = True
            all_d += [v for _, v in dd]
            ax1.plot(*zip(*dd, strict=True), ".-", color=c, label=f"{b}")
        if nn:
            any_n = True
            all_n += [v for _, v in nn]
            ax2.plot(*zip(*nn, strict=True), ".-", color=c, label=f"{b}")
    if not any_d and not any_n:
        return note("Sparsity plot skipped: solves.jsonl carries no d / n.")
    for ax, vals, lab, title in ((ax1, all_d, "d (max nonzeros per row)", "row sparsity d"),
                                 (ax2, all_n, "N (block dimension)", "block size N")):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(lab)
        ax.set_title(f"{title} per block")
        if spans_decades(vals, 1.5):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    # one legend for both panels, below them, so that it never covers a line
    handles, labels = ax1.get_legend_handles_labels() if any_d else \
        ax2.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)),
               fontsize=7, title="block", title_fontsize=7, frameon=False)
    cap = "row sparsity d and dimension N of the matrix actually solved, per block and step."
    if all_d and all_d == all_n:
        cap += " d = N throughout: every block was solved as a dense matrix (the panels agree)."
    return plots.save(fig, "sparsity.png", cap)
