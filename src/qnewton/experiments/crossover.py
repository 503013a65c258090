"""The one definition of a crossover in a sweep, used by the CLI and by the reports."""

from __future__ import annotations

import math
from collections.abc import Sequence


def find_crossovers(values: Sequence[float], totals: Sequence[float], baseline: float
                    ) -> list[float]:
    """Swept values where ``totals`` crosses ``baseline`` (log-log interpolation between
    neighbours), e.g. the gate times at which a run's total time equals classical Newton's.

    Points exactly on the baseline are crossovers themselves. Values must be sorted ascending;
    ``None`` and non-finite points are skipped. Interpolation is linear in (log value, log total)
    when everything is positive, else linear.
    """
    out: list[float] = []
    pts = [(v, t) for v, t in zip(values, totals, strict=True)
           if v is not None and t is not None and math.isfinite(v) and math.isfinite(t)]
    for i, (v, t) in enumerate(pts):
        if t == baseline:
            out.append(v)
            continue
        if i + 1 >= len(pts):
            break
        v2, t2 = pts[i + 1]
        if t2 == baseline or (t - baseline) * (t2 - baseline) > 0:
            continue
        if min(v, v2, t, t2, baseline) > 0:
            lv, lv2, lt, lt2, lb = (math.log(x) for x in (v, v2, t, t2, baseline))
            out.append(math.exp(lv + (lb - lt) * (lv2 - lv) / (lt2 - lt)))
        else:
            out.append(v + (baseline - t) * (v2 - v) / (t2 - t))
    return out
