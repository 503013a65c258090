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
from typing import TYPE_CHECKING, Protocol

from qnewton.scheduling import Scheduler
from qnewton.solvers import predict_classical
from qnewton.system import SystemShape

if TYPE_CHECKING:
    from qnewton.curvature import CurvatureBlock
    from qnewton.distributed.combine import GlobalBatch


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


class WorkAssignment(Protocol):
    """Which rank solves which block of a step."""

    def assign(self, blocks: Sequence[CurvatureBlock | None], batch: GlobalBatch
               ) -> tuple[list[int], list[float]]:
        """The owner rank of each block (``-1``: no single owner) and the predicted seconds
        the assignment balanced (empty when it predicts none)."""


class LocalAssignment:
    """One process: it owns every block it has a system for; nothing is predicted."""

    def assign(self, blocks: Sequence[CurvatureBlock | None], batch: GlobalBatch
               ) -> tuple[list[int], list[float]]:
        return [0 if mode == "owned" else -1 for mode in batch.modes], []


def predicted_seconds(scheduler: Scheduler, n: int, rows: int | None) -> float:
    """The scheduler's predicted seconds for a block of N = ``n`` (factor form with ``rows``
    rows, else dense), before conditioning: the best allowed classical solver's prediction at
    κ = 1 with this machine's rates. It stands for the owner's wall clock whatever the decision
    (a quantum solve is emulated by classical linear algebra of the same order)."""
    shape = SystemShape(n=n, nnz=n * n, d=n, kappa=1.0, factor_rows=rows)
    predicted = predict_classical(shape, scheduler.machine_rates(), scheduler.config.cg_rtol)
    allowed = [predicted[name] for name in scheduler.classical_candidates(shape)
               if name in predicted]
    return min(allowed or predicted.values() or [0.0])


class LPTAssignment:
    """Several ranks: :func:`lpt_assignment` of the owned blocks on the scheduler's predicted
    seconds, the same on every rank without communicating."""

    def __init__(self, scheduler: Scheduler, ranks: int) -> None:
        self.scheduler, self.ranks = scheduler, ranks

    def assign(self, blocks: Sequence[CurvatureBlock | None], batch: GlobalBatch
               ) -> tuple[list[int], list[float]]:
        predicted = [predicted_seconds(self.scheduler, b.n, batch.global_rows(i))
                     if mode == "owned" else 0.0
                     for i, (b, mode) in enumerate(zip(blocks, batch.modes, strict=True))]
        owned = [i for i, m in enumerate(batch.modes) if m == "owned"]
        owner = [-1] * len(blocks)
        for i, r in zip(owned, lpt_assignment([predicted[i] for i in owned], self.ranks),
                        strict=True):
            owner[i] = r
        return owner, predicted
