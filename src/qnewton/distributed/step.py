"""The one step path for 1..N ranks: what :class:`~qnewton.QNewton` calls to combine a step's
curvature, assign its blocks to ranks, solve them and share the outcomes (docs/method.md §4.10).

In a single process every collective is the identity and the one rank owns every block
(:class:`~qnewton.distributed.ownership.LocalAssignment`); on several ranks:

1. :meth:`StepPath.global_loss` — the loss averaged over the global batch (every rank then takes
   the same skip decisions), and the shard sizes ``S_r``, in one all-gather.
2. :meth:`StepPath.combine` — gradients all-reduced with weights ``S_r/S``, in the same
   all-reduce as the curvature traces (:meth:`StepPath.curvature_scale`) and every rank's shard
   table; each block's mode (owned, collective, none) decided on the global batch.
3. :meth:`StepPath.solve` — the large factor blocks whose split across all ranks is predicted
   faster (the scheduler's seconds plus the measured costs of the collectives,
   :mod:`~qnewton.distributed.comm_rates`) are dealt out by columns and solved by all ranks
   together (:mod:`~qnewton.distributed.column_shard`); ownership of the others by LPT; their
   shards gathered to the owners; each owner solves its blocks
   (:func:`~qnewton.stepping.solve_block`); matrix-free blocks are solved by all ranks in
   lockstep; the directions and the outcomes (records, events) go from their owners to every
   rank in one all-to-all, so that every rank books the same outcomes — each rank's measured
   seconds stay its own.

Randomness is keyed by (step, block index, attempt), never by rank, so a block's solve draws
what it would draw in one process.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import Any

import torch

from qnewton.accounting import Ledger
from qnewton.curvature import CurvatureConfig, CurvatureResult
from qnewton.curvature.representation import CurvatureBlock
from qnewton.distributed.column_shard import split_by_columns
from qnewton.distributed.combine import (
    GlobalBatch,
    combine_result,
    curvature_traces,
    gather_owned,
    global_mean_loss,
    row_factor,
)
from qnewton.distributed.comm_rates import CommRates, probe_comm_rates
from qnewton.distributed.context import DistContext
from qnewton.distributed.ownership import (
    LocalAssignment,
    LPTAssignment,
    WorkAssignment,
    block_key,
)
from qnewton.scheduling import Scheduler
from qnewton.stepping import BlockOutcome

#: Bytes of one length word in the directions' all-to-all; the least capacity for a rank's
#: pickled outcomes there (a step's outcomes of a few blocks take about 1–2 kB)
WORD = 8
MIN_OUTCOME_CAPACITY = 4096

#: Solves block ``index`` from its (combined) curvature block and gradient.
SolveOne = Callable[[int, CurvatureBlock | None, torch.Tensor], BlockOutcome]


class StepPath:
    """Communication and work assignment of a step; the identity in a single process.

    Args:
        process_group: the group to run on; ``None`` uses the default group when
            ``torch.distributed`` is initialized (e.g. under ``torchrun``).
        split: when a factor block is split across the ranks, one of
            :data:`~qnewton.distributed.ownership.SPLIT_POLICIES` (``auto``: when predicted
            faster).
    """

    def __init__(self, process_group: object = None, split: str = "auto") -> None:
        self.process_group = process_group
        self.split = split
        #: the group's measured collective costs (probed at the first step on several ranks)
        self.comm: CommRates | None = None
        self._ctx: DistContext | None = None
        self._detected = False
        self._batch: GlobalBatch | None = None
        #: this step's shard sizes (from the loss's all-gather) and global curvature scale
        self._sizes: list[int] | None = None
        self._scale: float | None = None
        #: bytes reserved for each rank's pickled outcomes in the directions' all-to-all
        #: (:meth:`_exchange`); set from the largest outcome the ranks sent at the last step,
        #: identically on every rank
        self.outcome_capacity = MIN_OUTCOME_CAPACITY
        self._rates_shared = False
        #: the blocks split across the ranks at the last step
        self.split_blocks: list[int] = []
        #: per step, the owner rank of each block (the last step's; for reports and tests)
        self.owner: list[int] = []
        self.predicted: list[float] = []
        #: block index → (its :func:`~qnewton.distributed.ownership.block_key`, the wall-clock
        #: seconds of its owner's last solve), the same on every rank: what LPT balances next
        self.block_seconds: dict[int, tuple[tuple[int, ...], float]] = {}
        #: the last step's global batch (shard sizes, modes, the bytes of each factor shard)
        self.last_batch: GlobalBatch | None = None
        #: the curvature is kept across steps on mini-batches (set by the optimizer at each
        #: step): blocks are then not split under the "auto" policy (:meth:`assignment`)
        self.reusing = False
        #: with kept curvature: (the blocks' modes as combined, owners, predicted seconds, this
        #: rank's gathered blocks, its column shards of the split blocks, the modes as
        #: assigned) of the last step, solved again at a reusing step (:meth:`solve`)
        self._gathered: tuple[list[str], list[int], list[float], dict[int, Any],
                              dict[int, Any], list[str]] | None = None

    @property
    def context(self) -> DistContext | None:
        """The process group seen from this rank (``None``: one process), detected once."""
        if not self._detected:
            self._ctx = DistContext.detect(self.process_group)
            self._detected = True
        return self._ctx

    def assignment(self, scheduler: Scheduler) -> WorkAssignment:
        """Which rank solves which block: this process alone, or LPT across the ranks."""
        ctx = self.context
        if ctx is None:
            return LocalAssignment()
        # with curvature reuse ("auto"): no split — a kept whole block costs its owner only
        # the solve at reusing steps, a split one communicates at every step (digits CNN,
        # distributed-step: 0.77–0.82x whole against 0.38–0.60x split)
        policy = "never" if self.reusing and self.split == "auto" else self.split
        return LPTAssignment(scheduler, ctx.world, self.comm, policy, self.block_seconds)

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
                self.comm = probe_comm_rates(ctx)
            self._rates_shared = True
        loss, self._sizes = global_mean_loss(ctx, losses, ledger)
        return loss

    def global_mean(self, value: float | torch.Tensor, samples: int, what: str, ledger: Ledger
                    ) -> float | torch.Tensor:
        """The sample-weighted mean over ranks of a per-rank mean ``value`` over ``samples``
        samples (``value`` in a single process): the step rule's trial loss, whole-model
        curvature ΔᵀCΔ and blocks' coupling (a tensor, entry by entry) of the global objective
        (docs/method.md §4.10)."""
        ctx = self.context
        if ctx is None:
            return value
        with ledger.phase("communication"):
            if isinstance(value, torch.Tensor):
                flat = value.to(torch.float64).reshape(-1)
                buf = torch.cat([flat * samples, flat.new_tensor([float(samples)])])
                total = ctx.all_reduce(buf, what)
                return (total[:-1] / total[-1]).reshape(value.shape)
            buf = torch.tensor([value * samples, float(samples)], dtype=torch.float64)
            total = ctx.all_reduce(buf, what)
        return float(total[0] / total[1])

    def combine(self, result: CurvatureResult, config: CurvatureConfig, over_budget: str,
                ledger: Ledger) -> CurvatureResult:
        """The step's curvature result on the global batch (``result`` in a single process)."""
        ctx = self.context
        if ctx is None:
            self._batch = GlobalBatch.local(result)
            return result
        combined, self._batch, self._scale = combine_result(ctx, result, config, over_budget,
                                                           ledger, self._sizes)
        self._sizes = None
        return combined

    def curvature_scale(self, local: CurvatureResult, ledger: Ledger) -> float:
        """The curvature's scale over the global batch: the largest block's mean absolute
        diagonal entry, ``max_b Σ_r w_r·tr|H_b,r| / N_b`` (blocks without a diagonal count 0).
        On several ranks the traces travel with the gradients' all-reduce in :meth:`combine`
        (call it first, on the same ``local``); here they are only read."""
        if self.context is not None and self._scale is not None:
            scale, self._scale = self._scale, None
            return scale
        traces = curvature_traces(local)
        return float(traces.max()) if traces.numel() else 0.0

    def solve(self, result: CurvatureResult, solve_one: SolveOne, scheduler: Scheduler,
              ledger: Ledger, kept: bool | None = None) -> list[BlockOutcome]:
        """Every block's outcome, in block order, each block solved once by its owner (all
        ranks together for a collective block); every rank returns the same outcomes.

        ``kept``: the curvature is kept across steps (``curvature_every`` > 1) — ``False`` at a
        step that built it, ``True`` at one that reuses it. The owners then keep the blocks
        gathered at the build, and every rank its column shards of the split blocks (with their
        Gram matrices and κ figures), and while the blocks' modes are unchanged they are solved
        again with the same owners and no new gather or split: the same systems one process
        solves with its kept blocks. Every rank takes the same branch (the
        reuse decision and the modes are the same on all ranks)."""
        ctx, batch = self.context, self._batch
        if batch is None:
            raise RuntimeError("StepPath.solve needs combine() first in the same step")
        self._batch = None
        self.last_batch = batch
        blocks = result.blocks
        modes = list(batch.modes)  # as combined, before the assignment splits any block
        held = self._gathered if kept and ctx is not None else None
        if held is not None and held[0] != modes:
            held = None
        if held is not None:
            self.owner, self.predicted = list(held[1]), list(held[2])
            batch.modes[:] = held[5]
        else:
            self.owner, self.predicted = self.assignment(scheduler).assign(blocks, batch)
        self.split_blocks = [i for i, mode in enumerate(batch.modes) if mode == "split"]
        rank = 0 if ctx is None else ctx.rank
        found: list[BlockOutcome | None] = [None] * len(blocks)
        seconds = 0.0  # this rank's block work (its solves, the split blocks' shares included)
        # split blocks first: all ranks arrive together, before their owned work differs
        split: dict[int, Any] = {}
        for i in self.split_blocks:
            if held is not None:
                block = held[4][i]
            else:
                with ledger.phase("communication"):
                    local = blocks[i]
                    block = split_by_columns(ctx, local, [rows[i] for rows in batch.rows],
                                             row_factor(batch.sizes[ctx.rank], local.scale),
                                             1.0 / batch.total)
            split[i] = block
            work = time.perf_counter()
            found[i] = solve_one(i, block, result.grads[i])
            seconds += time.perf_counter() - work
        if ctx is None:
            mine = {i: b for i, b in enumerate(blocks) if batch.modes[i] == "owned"}
        elif held is not None:
            mine = held[3]
        else:
            mine = gather_owned(ctx, blocks, self.owner, batch, ledger)
        self._gathered = ((modes, list(self.owner), list(self.predicted), mine, split,
                           list(batch.modes)) if kept is not None and ctx is not None else None)
        took: dict[int, float] = {}
        for i in sorted(mine):
            work = time.perf_counter()
            found[i] = solve_one(i, mine[i], result.grads[i])
            took[i] = time.perf_counter() - work
        seconds += sum(took.values())
        for i, mode in enumerate(batch.modes):  # collective, or none (a gradient step)
            if mode in ("collective", "none"):
                found[i] = solve_one(i, blocks[i], result.grads[i])
        if ctx is None:
            return found  # type: ignore[return-value]
        for i, outcome in enumerate(found):
            if outcome is not None:
                outcome.rank = rank if self.owner[i] == rank else -1
                for record in outcome.records:
                    record.rank = outcome.rank
                if outcome.rank == rank:
                    for event in outcome.events:
                        event["rank"] = rank
        self._exchange(ctx, result, found, seconds, took, ledger)
        self.block_seconds = {i: (block_key(blocks[i], batch, i), took[i])
                              for i in took if self.owner[i] >= 0}
        return found  # type: ignore[return-value]

    def _exchange(self, ctx: DistContext, result: CurvatureResult,
                  found: list[BlockOutcome | None], seconds: float, took: dict[int, float],
                  ledger: Ledger) -> None:
        """Directions from their owners to every rank, and outcomes and seconds to all
        (``took``: this rank's wall seconds per owned block, completed with the other
        owners'), in one all-to-all: each rank sends every other rank its owned blocks'
        directions (float64; every rank knows their sizes) followed by its pickled outcomes
        in :attr:`outcome_capacity` bytes behind their length. A rank whose outcomes do not fit
        sends them whole in a second all-to-all (every rank reads the lengths, so all take
        it). The next step's capacity is twice this step's largest outcome (at least
        :data:`MIN_OUTCOME_CAPACITY`), the same on every rank."""
        rank, world = ctx.rank, ctx.world
        cap = self.outcome_capacity
        with ledger.phase("communication"):
            owned = [[i for i, o in enumerate(self.owner) if o == r] for r in range(world)]
            sizes = [[result.grads[i].numel() for i in owned[r]] for r in range(world)]
            # the records pickled as they are (plain fields; asdict's deep copy costs ~4× more)
            own = {i: (found[i].how, found[i].reason, list(found[i].records), found[i].events,
                       took[i]) for i in owned[rank]}
            blob = pickle.dumps((own, seconds))
            parts = [found[i].direction.reshape(-1).to(torch.float64).cpu() for i in owned[rank]]
            payload = torch.cat([
                *(p.view(torch.uint8) for p in parts),
                torch.tensor([len(blob)], dtype=torch.int64).view(torch.uint8),
                _padded(blob if len(blob) <= cap else b"", cap)])
            length = [WORD * sum(sizes[r]) + WORD + cap for r in range(world)]
            sends = [0 if q == rank else length[rank] for q in range(world)]
            receives = [0 if r == rank else length[r] for r in range(world)]
            got = ctx.all_to_all(payload.repeat(world - 1), sends, receives,
                                 "all-to-all of the step's directions and solve outcomes")
            blobs: list[bytes | None] = [None] * world
            lengths = [0] * world
            pos = 0
            for r in range(world):
                if r == rank:
                    blobs[r], lengths[r] = blob, len(blob)
                    continue
                piece = got[pos:pos + length[r]].clone()
                pos += length[r]
                directions = piece[:WORD * sum(sizes[r])].view(torch.float64)
                for i, d in zip(owned[r], directions.split(sizes[r]), strict=True):
                    found[i] = BlockOutcome(d.clone().to(result.grads[i].device), "newton",
                                            rank=r)
                at = WORD * sum(sizes[r])
                lengths[r] = int(piece[at:at + WORD].view(torch.int64)[0])
                if lengths[r] <= cap:
                    blobs[r] = bytes(piece[at + WORD:at + WORD + lengths[r]].numpy())
            over = [r for r in range(world) if lengths[r] > cap]
            if over:
                mine = lengths[rank] if rank in over else 0
                extra = ctx.all_to_all(
                    _padded(blob, mine).repeat(world - 1),
                    [0 if q == rank else mine for q in range(world)],
                    [0 if r == rank or r not in over else lengths[r] for r in range(world)],
                    "all-to-all of the solve outcomes over the capacity")
                pos = 0
                for r in over:
                    if r != rank:
                        blobs[r] = bytes(extra[pos:pos + lengths[r]].cpu().numpy())
                        pos += lengths[r]
            self.outcome_capacity = max(MIN_OUTCOME_CAPACITY, 2 * max(lengths))
            shared = [pickle.loads(b) for b in blobs]  # noqa: S301 (this group's own ranks)
        for r, (theirs, _) in enumerate(shared):
            if r == rank:
                continue
            for i, (how, reason, records, events, wall) in theirs.items():
                took[i] = wall
                outcome = found[i]
                outcome.how, outcome.reason = how, reason
                outcome.records = list(records)
                outcome.events = list(events)
        ledger.add_rank_seconds([entry[1] for entry in shared])


def _padded(blob: bytes, size: int) -> torch.Tensor:
    """``blob`` as uint8, zero-padded to ``size`` bytes."""
    out = torch.zeros(size, dtype=torch.uint8)
    if blob:
        out[:len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    return out
