"""Timings from repeated runs: the median, a robust spread, and when a difference is only noise.

One wall-clock run says little: on a shared machine the same run can take noticeably more or
less time from one repeat to the next, and now and then one repeat takes ten times as long
(another job took the core). Experiments therefore repeat timed runs (interleaved, see
:mod:`qnewton.experiments.compare`) and compare them here by their **medians**, with a spread
that one outlier cannot inflate: the median absolute deviation (MAD). Comparing min–max ranges
instead let a single slow repeat among three make any difference "noise" (0.0223, 0.0225 and
0.237 s against ~0.207 s: 821% more time, reported as no difference).

A difference counts when the approximate 95% interval of the difference of the medians,
``Δ ± 1.96·√(se₁² + se₂²)``, excludes 0; the standard error of a median is ``1.2533·σ/√n`` with
``σ = 1.4826·MAD`` (the normal-consistent MAD; Rousseeuw & Croux, JASA 1993; the median's
asymptotic variance πσ²/2n), floored at :data:`MIN_RELATIVE_SIGMA` of the median. Otherwise it
is reported as noise, whatever the medians say. Repeats more than :data:`OUTLIER_SIGMAS` robust
σ from their median are named as outliers; every repeat is shown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: The verdict of a timing claim whose difference lies within the run-to-run spread.
NOISE_VERDICT = "no difference (noise)"

#: The verdict of a timing claim with a single run on one side: the noise is unknown.
UNKNOWN_NOISE_VERDICT = "n/a (one run: noise unknown)"

#: Scale of the MAD to a normal standard deviation (1/Φ⁻¹(3/4)).
MAD_TO_SIGMA = 1.4826
#: Standard error of a median over σ/√n for normal data (√(π/2)).
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2.0)
#: Two-sided 95% normal quantile.
Z_95 = 1.96
#: Smallest robust σ, relative to the median: wall-clock repeats on a shared machine never agree
#: better than about 1%, and identical repeats (MAD 0) must not make any difference "real".
MIN_RELATIVE_SIGMA = 0.01
#: A repeat further than this many robust σ from its median is named as an outlier.
OUTLIER_SIGMAS = 3.0
#: Up to this many repeats are listed one by one; more are summarized as min–max.
LISTED_REPEATS = 10


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

    @property
    def sigma(self) -> float:
        """Robust σ: 1.4826·MAD, at least :data:`MIN_RELATIVE_SIGMA` of the median."""
        med = self.median
        mad = statistics.median(abs(v - med) for v in self.values)
        return max(MAD_TO_SIGMA * mad, MIN_RELATIVE_SIGMA * abs(med))

    @property
    def median_se(self) -> float:
        """Standard error of the median: √(π/2)·σ/√n."""
        return MEDIAN_SE_FACTOR * self.sigma / math.sqrt(self.n)

    @property
    def outliers(self) -> tuple[float, ...]:
        """Repeats more than :data:`OUTLIER_SIGMAS` robust σ from the median (≥ 3 repeats)."""
        if self.n < 3:
            return ()
        med, sigma = self.median, self.sigma
        return tuple(v for v in self.values if abs(v - med) > OUTLIER_SIGMAS * sigma)

    def text(self, unit: str = " s") -> str:
        """``1.23 s`` for one value; ``median 1.23 s (runs 1.2, 1.23, 1.4 s)`` for several (in
        the order they ran), with any outliers named; min–max beyond :data:`LISTED_REPEATS`."""
        if self.n == 1:
            return f"{self.median:.4g}{unit}"
        if self.n <= LISTED_REPEATS:
            runs = "runs " + ", ".join(f"{v:.4g}" for v in self.values) + unit
        else:
            runs = f"{self.low:.4g}–{self.high:.4g}{unit}, {self.n} runs"
        out = self.outliers
        if out:
            runs += "; outlier" + ("s " if len(out) > 1 else " ") + ", ".join(
                f"{v:.4g}" for v in out)
        return f"median {self.median:.4g}{unit} ({runs})"


def spread_of(values: Sequence[float | None]) -> Spread | None:
    """The :class:`Spread` of ``values``; ``None`` if there are none or any is ``None`` (e.g. a
    repeat that never reached the accuracy target: its time to target is unknown)."""
    if not values or any(v is None for v in values):
        return None
    return Spread(tuple(float(v) for v in values))


@dataclass(frozen=True)
class TimingDifference:
    """``ours`` against ``reference``: the relative reduction of the medians and whether it is
    beyond the run-to-run noise.

    ``reduction`` is ``1 - median(ours) / median(reference)`` (positive: ours is faster).
    ``interval`` is the approximate 95% interval of ``median(ours) − median(reference)`` in
    seconds (see the module docstring); ``noise`` is true when it contains 0. ``known`` is false
    when either side has a single run, whose spread (and so the noise) is unknown.
    """

    ours: Spread
    reference: Spread
    reduction: float
    noise: bool
    known: bool
    interval: tuple[float, float]

    def interval_text(self) -> str:
        """The interval as a change of the reference median, e.g. ``+790% to +853%``."""
        ref = self.reference.median
        lo, hi = (100 * v / ref for v in self.interval)
        return f"{lo:+.3g}% to {hi:+.3g}% of the reference median (95% interval)"


def timing_difference(ours: Sequence[float], reference: Sequence[float]) -> TimingDifference:
    """Compare two sets of repeated timings (seconds > 0 for the reference's median)."""
    a, b = spread_of(ours), spread_of(reference)
    if a is None or b is None:
        raise ValueError("timing_difference needs at least one timing on each side")
    if b.median <= 0:
        raise ValueError(f"reference median must be > 0 seconds, got {b.median!r}")
    delta = a.median - b.median
    half = Z_95 * math.hypot(a.median_se, b.median_se)
    interval = (delta - half, delta + half)
    return TimingDifference(ours=a, reference=b, reduction=1.0 - a.median / b.median,
                            noise=interval[0] <= 0.0 <= interval[1],
                            known=a.n >= 2 and b.n >= 2, interval=interval)


def change_text(reduction: float) -> str:
    """``"75.0% less total time"`` / ``"20.0% more total time"`` for a relative reduction."""
    return (f"{100 * reduction:.1f}% less total time" if reduction >= 0
            else f"{-100 * reduction:.1f}% more total time")
