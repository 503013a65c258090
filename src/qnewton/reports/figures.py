"""Shared matplotlib helpers: figures, colours, and writing a PNG that the page embeds.

Plots are drawn on :class:`matplotlib.figure.Figure` objects attached to an Agg canvas: no
``pyplot``, no global backend switch, no display needed.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qnewton.reports.html import esc

# One colour per solver everywhere, so that routing, κ and time plots read alike.
QUANTUM_COLOR = "#d62728"
CLASSICAL_COLOR = "#1f77b4"
NONE_COLOR = "#eeeeee"


class Plots:
    """Writes figures as PNG into ``out_dir`` (names prefixed) and renders them as <figure>.

    The prefix keeps the plots of several runs apart when one report (a comparison) draws them
    all into its own directory.
    """

    def __init__(self, out_dir: Path, prefix: str = "") -> None:
        self.out_dir = out_dir
        self.prefix = prefix
        self.written: list[Path] = []

    def save(self, fig: Figure, name: str, caption: str) -> str:
        path = self.out_dir / f"{self.prefix}{name}"
        FigureCanvasAgg(fig)
        fig.savefig(path, format="png", dpi=100)
        self.written.append(path)
        return embed_png(path, caption)


def embed_png(path: Path, caption: str) -> str:
    """A <figure> holding the PNG at ``path`` as a base64 data URI, captioned."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{esc(path.name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{esc(path.name)}: {esc(caption)}</figcaption></figure>")


def new_figure(ncols: int = 1, width: float = 7.5, height: float = 4.2, nrows: int = 1,
               squeeze: bool = True, width_ratios: list[float] | None = None
               ) -> tuple[Figure, Any]:
    """A figure with ``nrows`` × ``ncols`` axes (one axes object when both are 1 and
    ``squeeze``)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, width_ratios=width_ratios)
    return fig, axes


def spans_decades(values: Iterable[float | None], decades: float = 2.0) -> bool:
    """Whether the positive finite ``values`` span at least ``decades`` (then a log axis)."""
    pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return len(pos) >= 2 and math.log10(max(pos) / min(pos)) >= decades


def colors(n: int) -> list[Any]:
    """``n`` distinguishable colours (one per block, run, ...)."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
