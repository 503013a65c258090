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


def _dense_throughout(run: RunData, blocks: list[str]) -> bool:
    """Whether every recorded solve had d = N (each block solved as a dense matrix)."""
    seen = False
    for b in blocks:
        for s in run.solves_of(b):
            d, n = finite(s.get("d")), finite(s.get("n"))
            if d is None or n is None:
                continue
            if d != n:
                return False
            seen = True
    return seen


def plot_sparsity(run: RunData, plots: Plots) -> str:
    blocks = run.blocks()
    dense = _dense_throughout(run, blocks)
    # d = N everywhere: the two panels would be the same picture, so only one is drawn
    panels = [("n", "N = d (block dimension = nonzeros per row)", "block size N (dense: d = N)")] \
        if dense else [("d", "d (max nonzeros per row)", "row sparsity d"),
                       ("n", "N (block dimension)", "block size N")]
    height = 4.2 + 0.2 * ((len(blocks) + 5) // 6)
    fig, axes = new_figure(len(panels), width=10 if len(panels) == 2 else 6.5, height=height)
    axes = list(axes) if len(panels) > 1 else [axes]
    found = [False] * len(panels)
    values: list[list[float]] = [[] for _ in panels]
    for b, c in zip(blocks, colors(len(blocks)), strict=True):
        rows = run.solves_of(b)
        for i, (key, _, _) in enumerate(panels):
            pts = _last_per_step(rows, key)
            if pts:
                found[i] = True
                values[i] += [v for _, v in pts]
                axes[i].plot(*zip(*pts, strict=True), ".-", color=c, label=f"{b}")
    if not any(found):
        return note("Sparsity plot skipped: solves.jsonl carries no d / n.")
    for ax, vals, (_, lab, title) in zip(axes, values, panels, strict=True):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(lab)
        ax.set_title(f"{title} per block")
        if spans_decades(vals, 1.5):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    # one legend for all panels, below them, so that it never covers a line
    handles, labels = axes[found.index(True)].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)),
               fontsize=7, title="block", title_fontsize=7, frameon=False)
    if dense:
        cap = ("dimension N of the matrix actually solved, per block and step; d = N for every "
               "solve (each block was solved as a dense matrix), so one panel shows both.")
    else:
        cap = "row sparsity d (left) and dimension N (right) of the matrix actually solved, " \
              "per block and step."
    return plots.save(fig, "sparsity.png", cap)
