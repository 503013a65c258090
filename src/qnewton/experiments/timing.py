"""Timings from repeated runs: the median, the spread, and when a difference is only noise.

One wall-clock run says little: on a shared machine the same run can take noticeably more or
less time from one repeat to the next. Experiments therefore repeat timed runs (interleaved, see
:mod:`qnewton.experiments.compare`) and compare them here. A difference counts only when the two
sets of repeats do not overlap at all (the slowest repeat of one is faster than the fastest
repeat of the other); otherwise it is reported as noise, whatever the medians say.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: The verdict of a timing claim whose difference lies within the run-to-run spread.
NOISE_VERDICT = "no difference (noise)"

#: The verdict of a timing claim with a single run on one side: the noise is unknown.
UNKNOWN_NOISE_VERDICT = "n/a (one run: noise unknown)"


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one quantity: median, min and max (all in the same unit)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def n(self) -> int:
        return len(self.values)

    def text(self, unit: str = " s") -> str:
        """``1.23 s`` for one value, ``median 1.23 s (1.1–1.4 s, 3 runs)`` for several."""
        if self.n == 1:
            return f"{self.median:.4g}{unit}"
        return (f"median {self.median:.4g}{unit} ({self.low:.4g}–{self.high:.4g}{unit}, "
                f"{self.n} runs)")


def spread_of(values: Sequence[float | None]) -> Spread | None:
    """The :class:`Spread` of ``values``; ``None`` if there are none or any is ``None`` (e.g. a
    repeat that never reached the accuracy target: its time to target is unknown)."""
    if not values or any(v is None for v in values):
        return None
    return Spread(tuple(float(v) for v in values))


@dataclass(frozen=True)
class TimingDifference:
    """``ours`` against ``reference``: the relative reduction of the medians and whether it is
    beyond the run-to-run spread.

    ``reduction`` is ``1 - median(ours) / median(reference)`` (positive: ours is faster).
    ``noise`` is true when the ranges ``[min, max]`` of the two overlap (ends included): then
    no repeat order is consistent with a real difference and none is claimed. ``known`` is
    false when either side has a single run, whose spread (and so the noise) is unknown.
    """

    ours: Spread
    reference: Spread
    reduction: float
    noise: bool
    known: bool


def timing_difference(ours: Sequence[float], reference: Sequence[float]) -> TimingDifference:
    """Compare two sets of repeated timings (seconds > 0 for the reference's median)."""
    a, b = spread_of(ours), spread_of(reference)
    if a is None or b is None:
        raise ValueError("timing_difference needs at least one timing on each side")
    if b.median <= 0:
        raise ValueError(f"reference median must be > 0 seconds, got {b.median!r}")
    overlap = max(a.low, b.low) <= min(a.high, b.high)
    return TimingDifference(ours=a, reference=b, reduction=1.0 - a.median / b.median,
                            noise=overlap, known=a.n >= 2 and b.n >= 2)


def change_text(reduction: float) -> str:
    """``"75.0% less total time"`` / ``"20.0% more total time"`` for a relative reduction."""
    return (f"{100 * reduction:.1f}% less total time" if reduction >= 0
            else f"{-100 * reduction:.1f}% more total time")
