"""Which rank solves which block: longest-processing-time-first on predicted seconds, after
deciding which large factor blocks are split across all ranks instead (:func:`plan_split`).

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

from qnewton.curvature.representation import FactorCosts
from qnewton.scheduling import Scheduler
from qnewton.solvers import predict_classical
from qnewton.system import SystemShape

if TYPE_CHECKING:
    from qnewton.curvature import CurvatureBlock
    from qnewton.distributed.combine import GlobalBatch
    from qnewton.distributed.comm_rates import CommRates

#: When a factor block is split across the ranks (:func:`plan_split`): when predicted faster,
#: always (tests, measurements) or never (one owner per block, as before splitting existed).
SPLIT_POLICIES = ("auto", "always", "never")
#: Collectives of one split Woodbury solve besides the Gram's all-reduce: F·b (M numbers), Fᵀ·y
#: and the diagonal (N numbers each) and the κ analysis' products — counted generously.
SPLIT_SOLVE_CALLS = 6


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


def split_total(split: set[int], seconds: Sequence[float], owned: Sequence[int],
                split_cost: Sequence[float], gather_cost: Sequence[float], ranks: int) -> float:
    """Predicted seconds of a step's solves when the blocks in ``split`` are solved by all ranks
    together (``seconds[i]/R`` of work each, plus ``split_cost[i]`` of communication) and the
    other ``owned`` blocks by LPT owners (their makespan, plus ``gather_cost[i]`` each to bring
    their rows to the owner; the gathers run one after another)."""
    rest = [i for i in owned if i not in split]
    together = sum(seconds[i] / ranks + split_cost[i] for i in split)
    times = [seconds[i] for i in rest]
    alone = makespan(times, lpt_assignment(times, ranks), ranks) if rest else 0.0
    return together + alone + sum(gather_cost[i] for i in rest)


def plan_split(seconds: Sequence[float], owned: Sequence[int], candidates: Sequence[int],
               split_cost: Sequence[float], gather_cost: Sequence[float], ranks: int,
               policy: str = "auto") -> set[int]:
    """Which ``candidates`` (factor blocks among ``owned``) to split across all ranks.

    ``auto``: greedily, largest predicted block first, split a block when that lowers
    :func:`split_total` — a large block stops bounding the makespan once split, at the price
    of its all-to-all; small ones stay whole (their latency costs more than their work).
    Deterministic in the predictions, so every rank plans the same split.
    """
    if policy not in SPLIT_POLICIES:
        raise ValueError(f"split policy must be one of {SPLIT_POLICIES}, got {policy!r}")
    if policy == "never" or ranks < 2:
        return set()
    if policy == "always":
        return set(candidates)
    split: set[int] = set()
    best = split_total(split, seconds, owned, split_cost, gather_cost, ranks)
    for i in sorted(candidates, key=lambda j: (-seconds[j], j)):
        trial = split | {i}
        total = split_total(trial, seconds, owned, split_cost, gather_cost, ranks)
        if total < best:
            split, best = trial, total
    return split


def split_costs(n: int, rows: Sequence[int], element_bytes: int, comm: CommRates,
                shard_bytes: float | None = None) -> tuple[float, float]:
    """Predicted communication seconds of a factor block of N = ``n`` columns with ``rows[r]``
    rows on rank r: (split across all ranks, gathered to one owner).

    Split: the busiest rank's all-to-all (its rows' columns of the other ranks), the Gram's
    all-reduce (M² float64) and :data:`SPLIT_SOLVE_CALLS` collectives of up to N float64.
    Owner: the other ranks' shards into the owner's link ((R−1)/R of them on average); a shard
    is its explicit rows, or ``shard_bytes`` (all ranks' shards together) when given — Kronecker
    rows travel as their factors (:mod:`~qnewton.distributed.factor_shard`)."""
    ranks = len(rows)
    m = sum(rows)
    widest = math.ceil(n / ranks)
    to_all = max(r * (n - widest) for r in rows) * element_bytes
    split = (comm.send(to_all) + comm.all_reduce(8.0 * m * m)
             + comm.send(8.0 * n * (ranks - 1) / ranks, SPLIT_SOLVE_CALLS))
    total = element_bytes * n * m if shard_bytes is None else shard_bytes
    gather = comm.send(total * (ranks - 1) / ranks)
    return split, gather


def block_key(block: CurvatureBlock, batch: GlobalBatch, index: int) -> tuple[int, ...]:
    """What a block's measured seconds are valid for: N, the global factor rows (``-1``: not
    in factor form) and the agreed Gram width (``-1``: explicit) — the same on every rank."""
    rows = batch.global_rows(index)
    width = -1 if batch.gram_columns is None else batch.gram_columns[index]
    return (block.n, -1 if rows is None else rows, width)


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


def predicted_seconds(scheduler: Scheduler, n: int, rows: int | None,
                      gram_columns: int | None = None) -> float:
    """The scheduler's predicted seconds for a block of N = ``n`` (factor form with ``rows``
    rows, else dense; ``gram_columns``: the width at which its Gram costs ``2·N'·M²`` flops,
    :func:`~qnewton.distributed.factor_shard.gram_columns`), before
    conditioning: the best allowed classical solver's prediction at κ = 1 with this machine's
    rates. It stands for the owner's wall clock whatever the decision (a quantum solve is
    emulated by classical linear algebra of the same order)."""
    # Kronecker rows: the Gram at its agreed width (factor_shard.gram_columns); the products
    # and FᵀF priced as explicit rows (an upper bound: the ranks exchange no more than the width)
    costs = None if rows is None or gram_columns is None else FactorCosts(
        product=2.0 * rows * n, gram=2.0 * gram_columns * rows * rows, normal=2.0 * rows * n * n)
    shape = SystemShape(n=n, nnz=n * n, d=n, kappa=1.0, factor_rows=rows, factor_costs=costs)
    predicted = predict_classical(shape, scheduler.machine_rates(), scheduler.config.cg_rtol)
    allowed = [predicted[name] for name in scheduler.classical_candidates(shape)
               if name in predicted]
    return min(allowed or predicted.values() or [0.0])


class LPTAssignment:
    """Several ranks: the large factor blocks that :func:`plan_split` splits (their mode becomes
    ``split`` in ``batch``: solved by all ranks together, owner ``-1``), then
    :func:`lpt_assignment` of the other owned blocks on the scheduler's predicted seconds — the
    same on every rank without communicating.

    A block held as Kronecker rows on every rank is priced from its factors: its Gram at
    ``gram_columns`` instead of N, its gather at the factors' bytes. A column split deals out
    explicit columns, so splitting such a block costs, besides the collectives, forming its
    explicit rows and the explicit block's work (its share of ``2·N·M²``): the planner splits it
    only if that is still faster.

    A block solved by one owner at an earlier step with the same :func:`block_key` is balanced
    on the wall-clock seconds its owner measured then (every rank holds the same figures: the
    owners exchange them with the outcomes) instead of the prediction: the scheduler's models
    price the linear algebra, not the per-block work around it (conditioning, the analysis, the
    routing decision), which dominates small blocks. That work is not divided by a split.

    Args:
        comm: the group's measured collective costs (``None``: nothing is split).
        policy: one of :data:`SPLIT_POLICIES`.
        measured: block index → (:func:`block_key`, measured seconds) from earlier steps.
    """

    def __init__(self, scheduler: Scheduler, ranks: int, comm: CommRates | None = None,
                 policy: str = "auto",
                 measured: dict[int, tuple[tuple[int, ...], float]] | None = None) -> None:
        self.scheduler, self.ranks, self.comm, self.policy = scheduler, ranks, comm, policy
        self.measured = {} if measured is None else measured

    def assign(self, blocks: Sequence[CurvatureBlock | None], batch: GlobalBatch
               ) -> tuple[list[int], list[float]]:
        kron = [mode == "owned" and batch.kronecker(i, b.n)
                for i, (b, mode) in enumerate(zip(blocks, batch.modes, strict=True))]
        modeled = [predicted_seconds(self.scheduler, b.n, batch.global_rows(i),
                                     batch.gram_columns[i] if kron[i] else None)
                   if mode == "owned" else 0.0
                   for i, (b, mode) in enumerate(zip(blocks, batch.modes, strict=True))]
        predicted = list(modeled)
        for i, (key, seconds) in self.measured.items():
            if i < len(blocks) and batch.modes[i] == "owned" and key == block_key(
                    blocks[i], batch, i):
                predicted[i] = seconds
        owned = [i for i, m in enumerate(batch.modes) if m == "owned"]
        candidates = [i for i in owned if batch.global_rows(i) is not None]
        if self.comm is not None and candidates and self.policy != "never":
            split_cost = [0.0] * len(blocks)
            gather_cost = [0.0] * len(blocks)
            rates = self.scheduler.machine_rates()
            for i in candidates:
                stored = getattr(blocks[i], "storage_dtype", None)
                size = 8 if stored is None else stored.itemsize
                rows = [r[i] for r in batch.rows]
                sent = (None if batch.shard_bytes is None
                        else float(sum(r[i] for r in batch.shard_bytes)))
                split_cost[i], gather_cost[i] = split_costs(blocks[i].n, rows, size,
                                                            self.comm, sent)
                if kron[i]:  # the split's explicit work and rows (see the class docstring)
                    explicit = predicted_seconds(self.scheduler, blocks[i].n, sum(rows))
                    split_cost[i] += ((explicit - modeled[i]) / self.ranks
                                      + size * max(rows) * blocks[i].n
                                      / rates.bandwidth_bytes_per_s)
                # a split divides the modeled linear algebra only: every rank still does the
                # rest of a measured solve (conditioning, analysis, decision) in full
                overhead = max(0.0, predicted[i] - modeled[i])
                split_cost[i] += overhead * (self.ranks - 1) / self.ranks
            for i in plan_split(predicted, owned, candidates, split_cost, gather_cost,
                                self.ranks, self.policy):
                batch.modes[i] = "split"
            owned = [i for i in owned if batch.modes[i] == "owned"]
        owner = [-1] * len(blocks)
        for i, r in zip(owned, lpt_assignment([predicted[i] for i in owned], self.ranks),
                        strict=True):
            owner[i] = r
        return owner, predicted
