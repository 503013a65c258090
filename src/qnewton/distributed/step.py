"""One distributed Newton step: what :class:`~qnewton.QNewton` calls when it runs on several
ranks (docs/method.md §4.10).

1. :meth:`DistributedNewton.global_loss` — the loss averaged over the global batch (every rank
   then takes the same skip decisions).
2. :meth:`DistributedNewton.combine` — gradients all-reduced with weights ``S_r/S``; each
   block's mode (owned, collective, none) decided on the global batch.
3. :meth:`DistributedNewton.solve` — ownership by LPT on the scheduler's predicted seconds;
   shards gathered to the owners; each owner conditions, analyses, schedules and solves its
   blocks; matrix-free blocks are solved by all ranks in lockstep; the directions are broadcast
   from their owners and every rank's records, events and measured seconds are exchanged, so
   that every rank's ledger ends the step identical (rank 0's is the one written).

Randomness is keyed by (step, block index, attempt), never by rank, so a block's solve draws
what it would draw in one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from qnewton.accounting import Ledger, SolveRecord
from qnewton.curvature import CurvatureConfig, CurvatureResult
from qnewton.curvature.representation import CurvatureBlock
from qnewton.distributed.combine import (
    GlobalBatch,
    combine_result,
    gather_owned,
    global_mean_loss,
)
from qnewton.distributed.context import DistContext
from qnewton.distributed.ownership import lpt_assignment
from qnewton.scheduling import Scheduler
from qnewton.solvers import predict_classical
from qnewton.system import SystemShape

#: ``(direction, (kind, reason))`` as :meth:`QNewton._block_direction` returns it.
Found = tuple[torch.Tensor, tuple[str, str | None]]
BlockDirection = Callable[[tuple[int, int], dict[str, Any], Any, CurvatureBlock | None,
                           torch.Tensor], Found]


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


class DistributedNewton:
    """The distributed part of :class:`~qnewton.QNewton`; inactive (every method a no-op) in a
    single process.

    Args:
        process_group: the group to run on; ``None`` uses the default group when
            ``torch.distributed`` is initialized (e.g. under ``torchrun``).
    """

    def __init__(self, process_group: Any = None) -> None:
        self.process_group = process_group
        self._ctx: DistContext | None = None
        self._detected = False
        self._batch: GlobalBatch | None = None
        self._rates_shared = False
        #: per step, the owner rank of each block (the last step's; for reports and tests)
        self.owner: list[int] = []
        self.predicted: list[float] = []

    @property
    def context(self) -> DistContext | None:
        """The process group seen from this rank, detected at the first step."""
        if not self._detected:
            self._ctx = DistContext.detect(self.process_group)
            self._detected = True
        return self._ctx

    def global_loss(self, losses: torch.Tensor, loss: torch.Tensor, scheduler: Scheduler,
                    ledger: Ledger) -> torch.Tensor:
        """The mean loss over the global batch (``loss`` unchanged in a single process). At the
        first step every rank takes rank 0's machine rates, so that all predict the same
        seconds (the ownership) and take the same solver decisions."""
        ctx = self.context
        if ctx is None:
            return loss
        if not self._rates_shared:
            rates = scheduler.machine_rates() if ctx.rank == 0 else None
            with ledger.phase("communication"):
                scheduler.rates = ctx.broadcast_object(rates, 0, "broadcast of machine rates")
            self._rates_shared = True
        return global_mean_loss(ctx, losses, ledger)

    def global_mean(self, value: float, samples: int, what: str, ledger: Ledger) -> float:
        """The sample-weighted mean over ranks of a per-rank mean ``value`` over ``samples``
        samples (``value`` in a single process): the adaptive step rule's trial loss and
        whole-model curvature ΔᵀCΔ of the global objective (docs/method.md §4.10)."""
        ctx = self.context
        if ctx is None:
            return value
        with ledger.phase("communication"):
            buf = torch.tensor([value * samples, float(samples)], dtype=torch.float64)
            total = ctx.all_reduce(buf, what)
        return float(total[0] / total[1])

    def combine(self, result: CurvatureResult, config: CurvatureConfig, over_budget: str,
                ledger: Ledger) -> CurvatureResult:
        """The step's curvature result on the global batch (``result`` in a single process)."""
        ctx = self.context
        if ctx is None:
            return result
        combined, self._batch = combine_result(ctx, result, config, over_budget, ledger)
        return combined

    def solve(self, step: int, jobs: Sequence[tuple[dict[str, Any], Any]],
              result: CurvatureResult, block_direction: BlockDirection, scheduler: Scheduler,
              ledger: Ledger) -> list[Found] | None:
        """Every block's direction, each solved once, by its owner (``None`` in a single
        process: the caller solves them itself)."""
        ctx, batch = self.context, self._batch
        if ctx is None:
            return None
        if batch is None:
            raise RuntimeError("DistributedNewton.solve needs combine() first in the same step")
        self._batch = None
        blocks = result.blocks
        self.predicted = [
            predicted_seconds(scheduler, b.n, batch.global_rows(i))
            if mode == "owned" else 0.0
            for i, (b, mode) in enumerate(zip(blocks, batch.modes, strict=True))]
        owned = [i for i, m in enumerate(batch.modes) if m == "owned"]
        assignment = lpt_assignment([self.predicted[i] for i in owned], ctx.world)
        self.owner = [-1] * len(blocks)
        for i, r in zip(owned, assignment, strict=True):
            self.owner[i] = r
        mine = gather_owned(ctx, blocks, self.owner, batch, ledger)

        found: list[Found | None] = [None] * len(blocks)
        start_records, start_events = len(ledger.records), len(ledger.events)
        work = time.perf_counter()
        for i in sorted(mine):
            group, block = jobs[i]
            found[i] = block_direction((step, i), group, block, mine[i], result.grads[i])
        seconds = time.perf_counter() - work
        own_records = ledger.records[start_records:]
        own_events = ledger.events[start_events:]
        for record in own_records:
            record.rank = ctx.rank
        for event in own_events:
            event["rank"] = ctx.rank
        # Matrix-free blocks: every rank runs the same solve; each product is an all-reduce.
        for i, mode in enumerate(batch.modes):
            if mode != "owned":
                group, block = jobs[i]
                records_before = len(ledger.records)
                found[i] = block_direction((step, i), group, block, blocks[i], result.grads[i])
                for record in ledger.records[records_before:]:
                    record.rank = -1
        self._exchange(ctx, step, jobs, found, own_records, own_events, seconds, ledger,
                       start_records)
        return found  # type: ignore[return-value]

    def _exchange(self, ctx: DistContext, step: int, jobs: Sequence[tuple[dict[str, Any], Any]],
                  found: list[Found | None], own_records: list[SolveRecord],
                  own_events: list[dict[str, Any]], seconds: float, ledger: Ledger,
                  start_records: int) -> None:
        """Directions from their owners to every rank; records, events and seconds to all."""
        with ledger.phase("communication"):
            for r in range(ctx.world):
                indices = [i for i, o in enumerate(self.owner) if o == r]
                if not indices:
                    continue
                sizes = [jobs[i][1].numel for i in indices]
                if r == ctx.rank:
                    flat = torch.cat([found[i][0].reshape(-1).to(torch.float64)
                                      for i in indices])
                else:
                    flat = torch.empty(sum(sizes), dtype=torch.float64)
                flat = ctx.broadcast(flat, r, f"broadcast of rank {r}'s directions")
                if r != ctx.rank:
                    for i, piece in zip(indices, flat.split(sizes), strict=True):
                        found[i] = (piece.clone(), ("newton", None))
            hows = {i: found[i][1] for i, o in enumerate(self.owner) if o == ctx.rank}
            shared = ctx.all_gather_object(
                (hows, [r.to_dict() for r in own_records], own_events, seconds),
                f"all-gather of step {step}'s solve records")
        for r, (their_hows, records, events, _) in enumerate(shared):
            if r == ctx.rank:
                continue
            for i, how in their_hows.items():
                found[i] = (found[i][0], tuple(how))
            for row in records:
                ledger.add_record(SolveRecord(**row))
            ledger.events.extend(events)
        # records in block order, as one process writes them
        order = {jobs[i][1].name: i for i in range(len(jobs))}
        ledger.records[start_records:] = sorted(ledger.records[start_records:],
                                                key=lambda rec: order.get(rec.block, -1))
        ledger.add_rank_seconds([entry[3] for entry in shared])
