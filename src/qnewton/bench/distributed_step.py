"""Case ``distributed-step``: a Newton step on 1 rank and on 2 ranks (gloo, one thread each),
measured in the same two processes in alternating rounds, with the communication time apart;
and a **modeled** table for 1–64 ranks built from the measured per-block work, the step's
communication volume and a stated network (docs/method.md §4.10).

Model: a 4-layer tanh MLP 784→h→h→h→10 (8 parameter blocks) on the MNIST subset, empirical
Fisher. Sizes follow the mode's Newton-step batch (smoke / quick / full), so the shared
``Settings`` needs no fields of its own.

Both step kinds run inside one pair of processes: rank 0 times a single-process step (an
optimizer on a one-rank group, while rank 1 waits at a barrier), then both ranks time a two-rank
step; the order alternates by round, like :func:`~qnewton.bench.stats.time_interleaved`.
"""

from __future__ import annotations

import datetime
import json
import math
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from qnewton.bench.settings import Settings
from qnewton.bench.stats import summarize
from qnewton.distributed import lpt_assignment, makespan, shard_slice
from qnewton.optimizer import QNewton
from qnewton.solvers import MachineRates

#: Stated networks of the modeled table: (name, bytes/s, seconds of latency per message hop).
NETWORKS = (("10 Gbit/s Ethernet", 10e9 / 8, 20e-6), ("100 Gbit/s InfiniBand", 100e9 / 8, 2e-6))
MODELED_RANKS = (1, 2, 4, 8, 16, 32, 64)
BYTES = 8  # float64 on the wire


def _sizes(s: Settings) -> tuple[int, int]:
    """(hidden width, global batch) for the mode of ``s``."""
    if s.step_batch <= 64:
        return 16, 64
    if s.step_batch <= 512:
        return 64, 256
    return 128, 512


def _model(hidden: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 10)).double()


def _data(batch: int, rounds: int) -> tuple[torch.Tensor, torch.Tensor]:
    from qnewton.tasks.data import mnist_array

    arr = torch.from_numpy(mnist_array()[: batch * rounds].copy())
    return (arr[:, :784] / 255.0).double(), arr[:, 784].long()


def _worker(rank: int, port: int, out: str, spec: dict[str, Any]) -> None:
    """One rank of the measurement (module level: started with the spawn method)."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=600))
    solo = dist.new_group([0])  # every rank must call new_group
    rates = MachineRates.from_dict(spec["rates"])
    rounds = spec["warmup"] + spec["repeats"]
    x, y = _data(spec["batch"], rounds)
    kw = dict(lr=0.3, reg=5e-3, clip=0.1, policy="classical", rates=rates, seed=spec["seed"])
    pair_model = _model(spec["hidden"], spec["seed"])
    pair = QNewton(pair_model.named_parameters(), **kw)
    single = None
    block_seconds: dict[str, float] = {}
    if rank == 0:
        single_model = _model(spec["hidden"], spec["seed"])
        single = QNewton(single_model.named_parameters(), process_group=solo, **kw)
    rows: list[dict[str, Any]] = []
    for r in range(rounds):
        part = slice(r * spec["batch"], (r + 1) * spec["batch"])
        xb, yb = x[part], y[part]
        mine = shard_slice(spec["batch"], rank, 2)
        row: dict[str, Any] = {}

        def run_single(xb=xb, yb=yb, row=row) -> None:
            dist.barrier()
            if single is not None:
                before = dict(single.ledger.measured)
                start = time.perf_counter()
                single.step(lambda: F.cross_entropy(single_model(xb), yb, reduction="none"))
                row["single"] = time.perf_counter() - start
                jobs = single.partition.current(single.param_groups)
                for (_, block), outcome in zip(jobs, single.last_outcomes, strict=True):
                    # each block's solve, measured
                    block_seconds[block.name] = sum(outcome.clock.seconds.values())
                after = single.ledger.measured
                row["single_local"] = sum(after[p] - before.get(p, 0.0)
                                          for p in ("forward_backward", "curvature"))
                row["single_update"] = after["update"] - before.get("update", 0.0)
            dist.barrier()

        def run_pair(xb=xb[mine], yb=yb[mine], row=row) -> None:
            dist.barrier()
            comm = pair.ledger.measured.get("communication", 0.0)
            critical = pair.ledger.critical_path_seconds
            start = time.perf_counter()
            pair.step(lambda: F.cross_entropy(pair_model(xb), yb, reduction="none"))
            row["pair"] = time.perf_counter() - start
            row["pair_communication"] = pair.ledger.measured["communication"] - comm
            row["pair_critical_path"] = pair.ledger.critical_path_seconds - critical

        for fn in ((run_single, run_pair) if r % 2 == 0 else (run_pair, run_single)):
            fn()
        if r >= spec["warmup"]:
            rows.append(row)
    if rank == 0:
        blocks = [(b.name, b.numel) for _, b in single.partition.current(single.param_groups)]
        result = {"rows": rows, "blocks": [
            {"name": name, "n": n, "seconds": block_seconds[name]} for name, n in blocks],
            "owner": pair.path.owner, "predicted": pair.path.predicted}
        Path(out, "result.json").write_text(json.dumps(result), encoding="utf-8")
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="qnewton-bench-dist-") as out:
        port = _free_port()
        procs = [ctx.Process(target=_worker, args=(r, port, out, spec)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(1800)
        codes = [p.exitcode for p in procs]
        for p in procs:
            if p.is_alive():
                p.kill()
        if codes != [0, 0]:
            raise RuntimeError(f"distributed-step workers exited with {codes}")
        return json.loads(Path(out, "result.json").read_text(encoding="utf-8"))


def modeled_step(ranks: int, *, local: float, update: float, block_seconds: list[float],
                 block_sizes: list[int], rows: int, bandwidth: float, latency: float
                 ) -> dict[str, float]:
    """**Modeled** seconds of one step on ``ranks`` ranks (docs/method.md §4.10): per-sample work
    ``local/R`` (linear in the shard), the LPT makespan of the measured per-block work, the
    update (every rank applies all), and communication as this implementation does it —
    a ring all-reduce of the gradients (2·(R−1)/R·8P bytes), the factor rows gathered owner by
    owner ((R−1)/R of 8·rows·P bytes through the owners' links, one after another), the
    directions broadcast owner by owner ((R−1)/R·8P bytes received by every rank), plus a
    latency of ⌈log₂R⌉ hops for each of 2R + 4 collectives."""
    p = sum(block_sizes)
    share = (ranks - 1) / ranks
    volume = BYTES * p * (2 * share + share * rows + share)
    hops = math.ceil(math.log2(ranks)) if ranks > 1 else 0
    comm = volume / bandwidth + (2 * ranks + 4) * hops * latency if ranks > 1 else 0.0
    owner = lpt_assignment(block_seconds, ranks)
    solve = makespan(block_seconds, owner, ranks)
    compute = local / ranks
    total = compute + solve + update + comm
    return {"ranks": ranks, "compute_s": compute, "solve_makespan_s": solve, "update_s": update,
            "communication_s": comm, "bytes_per_step": volume if ranks > 1 else 0.0,
            "step_s": total}


def case_distributed_step(s: Settings, rates: MachineRates, seed: int) -> dict[str, Any]:
    """Measured 1- vs 2-rank step time (speedup), and the modeled 1–64-rank table."""
    hidden, batch = _sizes(s)
    spec = {"hidden": hidden, "batch": batch, "repeats": s.repeats, "warmup": s.warmup,
            "seed": seed, "rates": rates.to_dict()}
    got = _measure(spec)
    rows = got["rows"]
    single = [r["single"] for r in rows]
    pair = [r["pair"] for r in rows]
    speed = [a / b for a, b in zip(single, pair, strict=True)]
    med = summarize(single)["median"] / summarize(pair)["median"]
    block_seconds = [b["seconds"] for b in got["blocks"]]
    block_sizes = [b["n"] for b in got["blocks"]]
    local = summarize([r["single_local"] for r in rows])["median"]
    update = summarize([r["single_update"] for r in rows])["median"]
    modeled = {
        name: [modeled_step(k, local=local, update=update, block_seconds=block_seconds,
                            block_sizes=block_sizes, rows=batch, bandwidth=bw, latency=lat)
               for k in MODELED_RANKS]
        for name, bw, lat in NETWORKS}
    return {
        "name": "distributed-step",
        "measured": med,
        "unit": "x faster, 2 ranks vs 1 (median step / median step; gloo, 1 thread per rank)",
        "baseline": f"one process on the same global batch ({batch} MNIST samples, MLP "
                    f"784→{hidden}→{hidden}→{hidden}→10, 8 blocks, empirical Fisher)",
        "target": "> 1 (2 ranks faster than 1) where 2 cores are free",
        "met": med > 1.0,
        "per_repeat": {"measured": speed, "met": [v > 1.0 for v in speed],
                       "what": "1-rank over 2-rank step time within each round"},
        "timings": {"single_step_s": single, "two_rank_step_s": pair,
                    "two_rank_communication_s": [r["pair_communication"] for r in rows],
                    "two_rank_critical_path_s": [r["pair_critical_path"] for r in rows]},
        "blocks": got["blocks"],
        "owner": got["owner"],
        "modeled_scaling": {
            "label": "modeled: measured per-block work (1 rank), per-sample work / R, LPT "
                     "makespan, communication volume / stated bandwidth + latency",
            "networks": {name: {"bytes_per_s": bw, "latency_s": lat}
                         for name, bw, lat in NETWORKS},
            "rows": modeled,
        },
    }
