"""Worker processes for tests/test_distributed.py: each joins a gloo group of two ranks on
127.0.0.1 and trains the same small model on its shard of the same global batch."""

from __future__ import annotations

import collections
import contextlib
import datetime
import os
import time
import traceback

import torch
import torch.distributed as dist
from torch import nn

from qnewton import QNewton
from qnewton.distributed import DistributedError, shard_slice
from qnewton.solvers import MachineRates

RATES = MachineRates.user(2e10, 4e10, 1e10)
#: (curvature, dtype, grouping) runs compared with one process
CASES = [("fisher", torch.float64, "tensor"), ("ggn", torch.float64, "tensor"),
         ("fisher", torch.float32, "tensor"), ("ggn", torch.float32, "module"),
         ("hessian", torch.float64, "tensor")]
STEPS = 5
BATCH = 13  # odd: the shards differ in size (7 and 6), so the S_r/S weights matter


def problem(dtype: torch.dtype) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(),
                          nn.Linear(4, 3)).to(dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS * BATCH, 6, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (STEPS * BATCH,), generator=gen)
    return model, x, y


#: torch.distributed calls counted per step (each a round trip on gloo); an object
#: collective's inner tensor collectives are counted too
COUNTED = ("all_reduce", "broadcast", "gather", "reduce", "all_gather", "all_to_all_single",
           "all_gather_object", "broadcast_object_list", "barrier", "monitored_barrier",
           "reduce_scatter", "scatter")


@contextlib.contextmanager
def counting_collectives():
    """Count every call of :data:`COUNTED` in ``torch.distributed`` (both the package's names
    and ``distributed_c10d``'s, which the object collectives call) while the body runs."""
    import torch.distributed.distributed_c10d as c10d

    counts: collections.Counter = collections.Counter()
    saved = []
    for name in COUNTED:
        original = getattr(c10d, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        for module in (dist, c10d):
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, counted)
    try:
        yield counts
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def train(curvature: str, dtype: torch.dtype, grouping: str, rank: int = 0, world: int = 1,
          matrix_free_bytes: int | None = None, split: str = "auto",
          per_step: list | None = None, outcome_capacity: int | None = None
          ) -> tuple[list[torch.Tensor], QNewton]:
    """Five steps on the global batches; rank ``rank`` of ``world`` uses its shard only;
    ``split`` is the step path's split policy. ``per_step``: filled with each step's
    torch.distributed calls (:func:`counting_collectives`), the collectives the step path booked
    by label, the owners and the step rule's backtracks. ``outcome_capacity``: the bytes
    reserved for each rank's outcomes in the directions' all-to-all, set before every step."""
    model, x, y = problem(dtype)
    extra = {} if matrix_free_bytes is None else {"max_block_bytes": matrix_free_bytes}
    # curvature_every=3: the five steps include steps that reuse kept curvature
    opt = QNewton(model.named_parameters(), lr=0.5, curvature=curvature, grouping=grouping,
                  reg=0.5, momentum=0.5, clip=0.1, rates=RATES, curvature_every=3, **extra)
    opt.path.split = split
    for step in range(STEPS):
        part = slice(step * BATCH, (step + 1) * BATCH)
        xb, yb = x[part], y[part]
        mine = shard_slice(BATCH, rank, world)
        xb, yb = xb[mine], yb[mine]

        def closure(xb=xb, yb=yb):
            out = model(xb)
            losses = nn.functional.cross_entropy(out, yb, reduction="none")
            return (losses, out) if curvature == "ggn" else losses

        if outcome_capacity is not None:
            opt.path.outcome_capacity = outcome_capacity
        if per_step is None:
            opt.step(closure)
            continue
        ctx = opt.path.context
        calls = dict(ctx.calls_by_label) if ctx is not None else {}
        sent = dict(ctx.sent_by_label) if ctx is not None else {}
        with counting_collectives() as counts:
            opt.step(closure)
        per_step.append({
            "torch": dict(counts), "owner": list(opt.path.owner),
            "backtracks": opt.last_step_info["backtracks"],
            "curvature": opt.curvature_schedule.last_reason,
            "labels": {k: v - calls.get(k, 0) for k, v in ctx.calls_by_label.items()
                       if v != calls.get(k, 0)},
            "bytes": {k: v - sent.get(k, 0) for k, v in ctx.sent_by_label.items()
                      if v != sent.get(k, 0)}})
    return [p.detach().clone() for p in model.parameters()], opt


def first_order(rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    """Five SGD-with-momentum steps of the training loop's first-order step; on several ranks
    the gradients are averaged over the global batch (RunGroup)."""
    from qnewton.accounting import Ledger
    from qnewton.distributed import DistContext, RunGroup
    from qnewton.training.loop import _first_order_step

    model, x, y = problem(torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    group = RunGroup(DistContext.detect()) if world > 1 else None
    for step in range(STEPS):
        part = slice(step * BATCH, (step + 1) * BATCH)
        mine = shard_slice(BATCH, rank, world)
        xb, yb = x[part][mine], y[part][mine]
        _first_order_step(opt, lambda xb=xb, yb=yb: nn.functional.cross_entropy(
            model(xb), yb, reduction="none"), Ledger(), group)
    return [p.detach().clone() for p in model.parameters()]


#: runs with every factor block split across the ranks (compared with one process)
SPLIT_CASES = [("fisher", torch.float64, "tensor"), ("ggn", torch.float32, "module")]


def shard_factor() -> tuple[torch.Tensor, list[int]]:
    """A global factor F (7×11, float64) and its rows by rank (4 and 3)."""
    gen = torch.Generator().manual_seed(5)
    return torch.randn(7, 11, generator=gen, dtype=torch.float64), [4, 3]


def column_shard_ops(rank: int, world: int) -> dict[str, object]:
    """Every operation of a column-split factor block of :func:`shard_factor`, and the bytes
    this rank sent for a 10-number all-reduce and for the split's all-to-all."""
    from qnewton.curvature.representation import FactorBlock
    from qnewton.distributed import DistContext, probe_comm_rates, split_by_columns

    ctx = DistContext.detect()
    factor, rows = shard_factor()
    start = sum(rows[:rank])
    # this rank's rows stored √2 too large: the row factor √(1/2) restores them
    local = FactorBlock("w", "fisher", factor[start:start + rows[rank]] * 2.0 ** 0.5,
                        scale=0.1)
    ctx.sent.clear()
    ctx.all_reduce(torch.zeros(10, dtype=torch.float64), "test all-reduce")
    reduce_bytes = ctx.bytes_sent
    block = split_by_columns(ctx, local, rows, 0.5 ** 0.5, 1.0 / 7)
    to_all = ctx.sent["all_to_all"]
    gen = torch.Generator().manual_seed(6)
    v, u = torch.randn(11, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen,
                                                                             dtype=torch.float64)
    comm = probe_comm_rates(ctx)
    return {"gram": block.gram(), "fv": block.apply_factor(v), "ftu": block.apply_factor_t(u),
            "diagonal": block.diagonal(), "matvec": block.matvec(v), "dense": block.to_dense(),
            "max_entry": block.max_abs_entry(), "n": block.n, "rows": block.factor_rows,
            "reduce_bytes": reduce_bytes, "all_to_all_bytes": to_all,
            "comm": (comm.latency_s, comm.bytes_per_s)}


#: samples per rank of :func:`mixed_blocks`; (inputs, outputs) of its two-piece blocks
MIXED_SAMPLES = (4, 3)
MIXED_WIDTHS = ((5, 3), (1, 3))


def mixed_blocks(rank: int) -> list:
    """Rank ``rank``'s three GGN blocks (2 rows per sample, N = 18, scale 1/S_r): Kronecker rows
    on rank 0 but explicit rows on rank 1; Kronecker rows of different layouts (rank 1: one
    piece of 6 inputs); Kronecker rows of the same layout (the only one joined unformed)."""
    from qnewton.curvature.representation import FactorBlock
    from qnewton.curvature.structured import (
        KroneckerRows,
        StructuredFactor,
        StructuredFactorBlock,
    )

    s = MIXED_SAMPLES[rank]
    gen = torch.Generator().manual_seed(20 + rank)

    def kron(widths):
        pieces = [KroneckerRows(torch.randn(s, i, generator=gen, dtype=torch.float64),
                                torch.randn(s, 2, o, generator=gen, dtype=torch.float64))
                  for i, o in widths]
        return StructuredFactorBlock("b", "ggn", StructuredFactor(pieces), scale=1.0 / s)

    first = kron(MIXED_WIDTHS)
    if rank == 1:
        first = FactorBlock("b", "ggn", first.factor, scale=1.0 / s)
    second = kron(((6, 3),) if rank == 1 else MIXED_WIDTHS)
    return [first, second, kron(MIXED_WIDTHS)]


def mixed_gather(rank: int, world: int) -> dict[str, object]:
    """:func:`mixed_blocks` combined on the global batch and gathered to rank 0: the owner's
    blocks (type name, H), the agreed Gram widths and the bytes each rank sent."""
    from qnewton.accounting import Ledger
    from qnewton.curvature import CurvatureConfig, CurvatureResult
    from qnewton.distributed import DistContext
    from qnewton.distributed.combine import combine_result, gather_owned

    ctx = DistContext.detect()
    blocks = mixed_blocks(rank)
    result = CurvatureResult(blocks=blocks, grads=[torch.zeros(18, dtype=torch.float64)] * 3,
                             loss=torch.tensor(0.0), kind="ggn",
                             num_samples=MIXED_SAMPLES[rank], num_outputs=2)
    ctx.sent.clear()
    combined, batch, _ = combine_result(ctx, result, CurvatureConfig(kind="ggn"), "skip",
                                        Ledger())
    before = ctx.bytes_sent
    mine = gather_owned(ctx, combined.blocks, [0, 0, 0], batch, Ledger())
    return {"types": [type(mine[i]).__name__ for i in sorted(mine)],
            "dense": [mine[i].to_dense() for i in sorted(mine)],
            "gram_columns": batch.gram_columns, "shard_bytes": batch.shard_bytes,
            "gather_bytes": ctx.bytes_sent - before}


def _join(rank: int, world: int, port: int, timeout: float = 30.0) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout))


def equality_worker(rank: int, world: int, port: int, out: str) -> None:
    """Every case's parameters, owners and rank seconds after STEPS steps → ``out``/rank.pt."""
    _join(rank, world, port)
    results = {}
    for case in CASES:
        per_step: list = []
        params, opt = train(*case, rank=rank, world=world, per_step=per_step)
        summary = opt.ledger.summary()
        results[case[:2] + (case[2],)] = {
            "params": params, "owner": opt.path.owner,
            "predicted": opt.path.predicted,
            "records": [(r.block, r.rank) for r in opt.ledger.records],
            "representations": [r.representation for r in opt.ledger.records],
            "per_step": per_step,
            "block_seconds": opt.path.block_seconds,
            "rank_seconds": summary.get("rank_solve_seconds"),
            "critical": summary.get("critical_path_seconds"),
        }
    per_step = []
    params, _ = train("fisher", torch.float64, "tensor", rank=rank, world=world,
                      per_step=per_step, outcome_capacity=16)
    results["overflow"] = {"params": params, "per_step": per_step}
    params, opt = train("fisher", torch.float64, "tensor", rank=rank, world=world,
                        matrix_free_bytes=200)
    results["matrix-free"] = {"params": params, "records": [
        (r.block, r.rank, r.representation) for r in opt.ledger.records]}
    for case in SPLIT_CASES:
        params, opt = train(*case, rank=rank, world=world, split="always")
        results[("split",) + case] = {
            "params": params, "split": opt.path.split_blocks,
            "records": [(r.block, r.rank) for r in opt.ledger.records]}
    results["column-shard"] = column_shard_ops(rank, world)
    results["mixed"] = mixed_gather(rank, world)
    results["sgd"] = first_order(rank, world)
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    run_worker(rank, world, port, out)  # the same group: train() finds it initialized


# curvature_every=1: a distributed checkpoint holds no kept curvature (each rank's is its own
# shard's), so a run resumed on one process from a reusing one would build where the
# uninterrupted run reuses, and this test compares the resumed run with one process exactly
RUN_CONFIG = dict(task="digits", tiny=True, optimizer="qnewton", max_steps=5, batch_size=31,
                  momentum=0.5, reg=0.5, checkpoint_every=1, curvature_every=1,
                  grouping="tensor")  # several blocks, so that both ranks own some


def run_worker(rank: int, world: int, port: int, out: str) -> None:
    """``train()`` in the caller's process group (as in a user's torchrun script); rank 0
    dies abruptly after step 3 (checkpoint written), rank 1 must then stop with a
    DistributedError, not hang."""
    from qnewton.training import TrainConfig, train

    os.environ["QNEWTON_DIST_TIMEOUT"] = "20"

    def write(outcome: str) -> None:
        with open(os.path.join(out, f"outcome{rank}.txt"), "w", encoding="utf-8") as fh:
            fh.write(f"{time.time()}\n{outcome}")

    def die(row):
        if row["step"] == 3:
            write("killed")
            os._exit(3)  # no clean-up, like a crash or kill -9

    try:
        train(TrainConfig(**RUN_CONFIG), os.path.join(out, "run"), progress=False,
              on_step=die, rates=RATES)
        write("finished")
    except DistributedError as exc:
        write("distributed-error: " + str(exc))
    except Exception:  # noqa: BLE001 (the test reports any other failure)
        write("wrong error: " + traceback.format_exc())
    os._exit(0)  # the group cannot be destroyed cleanly with a dead peer
