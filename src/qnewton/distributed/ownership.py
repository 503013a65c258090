"""Which rank solves which block: longest-processing-time-first on predicted seconds.

Graham (1969), "Bounds on multiprocessing timing anomalies": assigning jobs in decreasing order
of time, each to the currently least-loaded machine, gives a makespan (the slowest rank's total)
at most ``(4/3 − 1/(3m))`` times the optimum on ``m`` machines (docs/method.md §4.10). The
assignment is a pure function of the predictions, so every rank computes the same one without
communicating.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence


def lpt_assignment(seconds: Sequence[float], ranks: int) -> list[int]:
    """The owner rank of each job (``seconds[i]`` its predicted time), LPT order.

    Ties break by job index (longest first, then lower index) and by rank (least loaded, then
    lower rank), so the result is deterministic. A non-finite or negative prediction counts as
    0 (it cannot be balanced on; such a job goes wherever the load is lowest).
    """
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"ranks must be an integer >= 1, got {ranks!r}")
    times = [t if math.isfinite(t) and t > 0 else 0.0 for t in (float(s) for s in seconds)]
    order = sorted(range(len(times)), key=lambda i: (-times[i], i))
    heap = [(0.0, r) for r in range(ranks)]
    owner = [0] * len(times)
    for i in order:
        load, r = heapq.heappop(heap)
        owner[i] = r
        heapq.heappush(heap, (load + times[i], r))
    return owner


def rank_loads(seconds: Sequence[float], owner: Sequence[int], ranks: int) -> list[float]:
    """Predicted seconds per rank for an assignment."""
    loads = [0.0] * ranks
    for t, r in zip(seconds, owner, strict=True):
        loads[r] += float(t) if math.isfinite(t) and t > 0 else 0.0
    return loads


def makespan(seconds: Sequence[float], owner: Sequence[int], ranks: int) -> float:
    """The slowest rank's predicted total (the step's critical path for the solves)."""
    return max(rank_loads(seconds, owner, ranks), default=0.0)
