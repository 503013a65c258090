"""Case ``distributed-step``: a Newton step on 1 rank and on 2 ranks (gloo, one thread each),
measured in the same two processes in alternating rounds, with the communication time and the
bytes sent apart — two-rank steps both as qnewton takes them (large factor blocks split across
the ranks where predicted faster) and with every block whole on one owner (the design before
splitting); and a **modeled** table for 1–64 ranks built from the measured per-block work, the
measured collective costs and two stated networks (docs/method.md §4.10).

Models: a 4-layer tanh MLP 784→h→h→h→10 (8 parameter blocks, all Kronecker rows) on the MNIST
subset, and the digits CNN of :mod:`~qnewton.bench.workloads` (conv 1→8 3×3, conv 8→16 3×3,
linear 256→10: 6 blocks, the convolutions' as explicit rows) on scikit-learn's 8×8 digits;
empirical Fisher, float64. Sizes follow the mode's Newton-step batch (smoke / quick / full), so
the shared ``Settings`` needs no fields of its own.

All step kinds run inside one pair of processes: rank 0 times a single-process step (an
optimizer on a one-rank group, while rank 1 waits at a barrier), then both ranks time the
two-rank steps; the order rotates by round, like :func:`~qnewton.bench.stats.time_interleaved`.
"""

from __future__ import annotations

import datetime
import json
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
from qnewton.distributed import CommRates, plan_split, shard_slice
from qnewton.distributed.ownership import SPLIT_SOLVE_CALLS, split_costs, split_total
from qnewton.optimizer import QNewton
from qnewton.solvers import MachineRates

#: Stated networks of the modeled table: (name, bytes/s, seconds of latency per message hop).
NETWORKS = (("10 Gbit/s Ethernet", 10e9 / 8, 20e-6), ("100 Gbit/s InfiniBand", 100e9 / 8, 2e-6))
MODELED_RANKS = (1, 2, 4, 8, 16, 32, 64)
#: Two ranks against one process on the MLP and on the CNN (issue 20's targets).
TARGET_SPEEDUP = 1.6
TARGET_SPEEDUP_CNN = 1.3
MODELS = ("mlp", "cnn")
BYTES = 8  # float64 on the wire
#: A step's collectives besides the gradients' all-reduce, the gathers and a split block's
#: (docs/method.md §4.10, "Collectives of a step"): the loss's all-gather, the directions' and
#: outcomes' all-to-all, the step rule's all-reduces of ΔᵀCΔ and of one trial loss
OTHER_COLLECTIVES = 4


def _sizes(s: Settings) -> tuple[int, int]:
    """(hidden width, global batch) for the mode of ``s``."""
    if s.step_batch <= 64:
        return 16, 64
    if s.step_batch <= 512:
        return 64, 256
    return 128, 512


def _model(hidden: int, seed: int, name: str = "mlp") -> nn.Module:
    torch.manual_seed(seed)
    if name == "cnn":
        from qnewton.bench.workloads import DigitsCNN

        return DigitsCNN().double()
    return nn.Sequential(nn.Linear(784, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 10)).double()


def _data(batch: int, rounds: int, name: str = "mlp") -> tuple[torch.Tensor, torch.Tensor]:
    if name == "cnn":  # the digits training split, cycled when the rounds need more
        from qnewton.bench.workloads import load_workload

        work = load_workload("digits-cnn")
        index = torch.arange(batch * rounds) % work.x_train.shape[0]
        return work.x_train[index].double(), work.y_train[index].long()
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
    results = {name: _measure_model(rank, spec, name, solo) for name in MODELS}
    if rank == 0:
        Path(out, "result.json").write_text(json.dumps(results), encoding="utf-8")
    dist.barrier()
    dist.destroy_process_group()


def _measure_model(rank: int, spec: dict[str, Any], name: str, solo: Any
                   ) -> dict[str, Any] | None:
    """Rank ``rank``'s rounds on model ``name``; the result on rank 0 (``None`` elsewhere)."""
    rates = MachineRates.from_dict(spec["rates"])
    rounds = spec["warmup"] + spec["repeats"]
    x, y = _data(spec["batch"], rounds, name)
    kw = dict(lr=0.3, reg=5e-3, clip=0.1, policy="classical", rates=rates, seed=spec["seed"])
    pair_model = _model(spec["hidden"], spec["seed"], name)
    pair = QNewton(pair_model.named_parameters(), **kw)
    whole_model = _model(spec["hidden"], spec["seed"], name)
    whole = QNewton(whole_model.named_parameters(), **kw)
    whole.path.split = "never"  # every block on one owner: the design before splitting
    single = None
    block_seconds: dict[str, float] = {}
    if rank == 0:
        single_model = _model(spec["hidden"], spec["seed"], name)
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
                start, cpu = time.perf_counter(), time.process_time()
                single.step(lambda: F.cross_entropy(single_model(xb), yb, reduction="none"))
                row["single"] = time.perf_counter() - start
                row["single_cpu"] = time.process_time() - cpu
                jobs = single.partition.current(single.param_groups)
                for (_, block), outcome in zip(jobs, single.last_outcomes, strict=True):
                    # each block's solve, measured
                    block_seconds[block.name] = sum(outcome.clock.seconds.values())
                after = single.ledger.measured
                row["single_local"] = sum(after[p] - before.get(p, 0.0)
                                          for p in ("forward_backward", "curvature"))
                row["single_update"] = after["update"] - before.get("update", 0.0)
            dist.barrier()

        def run_two(opt, model, key, xb=xb[mine], yb=yb[mine], row=row) -> None:
            dist.barrier()
            comm = opt.ledger.measured.get("communication", 0.0)
            critical = opt.ledger.critical_path_seconds
            sent = opt.path.context.bytes_sent
            start, cpu = time.perf_counter(), time.process_time()
            opt.step(lambda: F.cross_entropy(model(xb), yb, reduction="none"))
            row[key] = time.perf_counter() - start
            row[f"{key}_cpu_rank{rank}"] = time.process_time() - cpu
            row[f"{key}_communication"] = opt.ledger.measured["communication"] - comm
            row[f"{key}_critical_path"] = opt.ledger.critical_path_seconds - critical
            row[f"{key}_bytes_rank{rank}"] = opt.path.context.bytes_sent - sent

        kinds = [run_single, lambda: run_two(pair, pair_model, "pair"),
                 lambda: run_two(whole, whole_model, "whole")]
        for k in range(len(kinds)):
            kinds[(r + k) % len(kinds)]()
        if r >= spec["warmup"]:
            rows.append(row)
    theirs = [None, None]
    dist.all_gather_object(theirs, rows)  # each rank's bytes sent
    if rank != 0:
        return None
    for row, other in zip(rows, theirs[1], strict=True):
        for key in ("pair", "whole"):
            row[f"{key}_bytes"] = row[f"{key}_bytes_rank0"] + other[f"{key}_bytes_rank1"]
            row[f"{key}_cpu"] = max(row[f"{key}_cpu_rank0"], other[f"{key}_cpu_rank1"])
    blocks = [(b.name, b.numel) for _, b in single.partition.current(single.param_groups)]
    return {"rows": rows, "blocks": [
        {"name": name, "n": n, "seconds": block_seconds[name]} for name, n in blocks],
        "owner": pair.path.owner, "predicted": pair.path.predicted,
        "split": pair.path.split_blocks, "comm": pair.path.comm.to_dict(),
        "whole_owner": whole.path.owner,
        # bytes per sample of each block's factor shards (both ranks'; -1: not factor form)
        "shard_bytes_per_sample": [
            sum(r[i] for r in pair.path.last_batch.shard_bytes) / spec["batch"]
            if min(r[i] for r in pair.path.last_batch.shard_bytes) >= 0 else -1.0
            for i in range(len(blocks))],
        "kronecker": [pair.path.last_batch.kronecker(i, n) for i, (_, n) in enumerate(blocks)],
        "representations": sorted({r.representation for r in single.ledger.records})}


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
                 block_sizes: list[int], rows: int, comm: CommRates,
                 shard_per_sample: list[float] | None = None,
                 kronecker: list[bool] | None = None) -> dict[str, float]:
    """**Modeled** seconds of one step on ``ranks`` ranks (docs/method.md §4.10), as this
    implementation takes it: per-sample work ``local/R`` (linear in the shard); the blocks that
    :func:`~qnewton.distributed.plan_split` splits on these figures cost ``t/R`` of work and
    their all-to-all, Gram all-reduce and solve collectives, the others the LPT makespan of the
    measured per-block work plus gathering their rows to the owner
    (:func:`~qnewton.distributed.ownership.split_total`); the update (every rank applies all);
    a ring all-reduce of the gradients and the owned directions sent to every rank; ``comm``'s
    latency once per other collective (:data:`OTHER_COLLECTIVES`; the gathers' latencies are
    charged per block, as the planner charges them, though one all-to-all carries them all).
    Bytes: every rank's sends summed. A block's gather
    moves ``shard_per_sample[i]`` bytes per sample (its factors for Kronecker rows; default: 8
    bytes per explicit row entry); Kronecker blocks (``kronecker[i]``) are never split (a
    column split needs their explicit rows, which the planner prices out, §4.10)."""
    p = sum(block_sizes)
    if ranks == 1:
        solve = sum(block_seconds)
        return {"ranks": 1, "compute_s": local, "solve_s": solve, "update_s": update,
                "communication_s": 0.0, "split_blocks": 0, "bytes_per_step": 0.0,
                "step_s": local + solve + update}
    comm = CommRates(comm.latency_s, comm.bytes_per_s, ranks)
    share = (ranks - 1) / ranks
    shard = [rows // ranks + (1 if r < rows % ranks else 0) for r in range(ranks)]
    everything = list(range(len(block_sizes)))
    per_sample = shard_per_sample or [BYTES * n for n in block_sizes]
    per_sample = [BYTES * n if b < 0 else b for b, n in zip(per_sample, block_sizes, strict=True)]
    kron = kronecker or [False] * len(block_sizes)
    split_cost, gather_cost = zip(*(split_costs(n, shard, BYTES, comm, b * rows)
                                    for n, b in zip(block_sizes, per_sample, strict=True)),
                                  strict=True)
    candidates = [i for i in everything if not kron[i]]
    split = plan_split(block_seconds, everything, candidates, split_cost, gather_cost, ranks)
    solve = split_total(split, block_seconds, everything, split_cost, gather_cost, ranks)
    owned = sum(n for i, n in enumerate(block_sizes) if i not in split)
    other = comm.all_reduce(BYTES * p) + comm.send(BYTES * owned * share, OTHER_COLLECTIVES)
    volume = ranks * (2 * share * BYTES * p + 2 * share * BYTES * rows * rows * len(split))
    for i, n in enumerate(block_sizes):
        # rows to the other ranks' columns, or the shards to the owner
        volume += share * rows * (BYTES * n if i in split else per_sample[i])
        # a split block's N-sized all-gathers, or an owned block's direction broadcast
        calls = SPLIT_SOLVE_CALLS if i in split else 1
        volume += calls * (ranks - 1) * BYTES * n
    compute = local / ranks
    total = compute + solve + update + other
    return {"ranks": ranks, "compute_s": compute, "solve_s": solve, "update_s": update,
            "communication_s": other, "split_blocks": len(split), "bytes_per_step": volume,
            "step_s": total}


def _model_summary(got: dict[str, Any], target: float) -> dict[str, Any]:
    """One model's measured rows → speed-ups, timings, bytes (both ranks' sends per step)."""
    rows = got["rows"]
    single = [r["single"] for r in rows]
    pair = [r["pair"] for r in rows]
    whole = [r["whole"] for r in rows]
    speed = [a / b for a, b in zip(single, pair, strict=True)]
    cpu_single, cpu_pair = [r["single_cpu"] for r in rows], [r["pair_cpu"] for r in rows]
    return {
        "speedup": summarize(single)["median"] / summarize(pair)["median"],
        # what a step's work costs each process, waits for a core excluded: the speed-up's
        # bound where both ranks have a core (gloo's polling threads counted as work)
        "cpu_ratio": summarize(cpu_single)["median"] / summarize(cpu_pair)["median"],
        "cpu_ratio_label": "measured process CPU seconds (not wall clock): one process's step "
                           "over the busier rank's",
        "target": target,
        "per_repeat": speed,
        "timings": {"single_step_s": single, "two_rank_step_s": pair,
                    "two_rank_communication_s": [r["pair_communication"] for r in rows],
                    "two_rank_critical_path_s": [r["pair_critical_path"] for r in rows],
                    "two_rank_whole_blocks_step_s": whole,
                    "two_rank_whole_blocks_communication_s": [r["whole_communication"]
                                                              for r in rows],
                    "single_local_s": [r["single_local"] for r in rows],
                    "single_cpu_s": cpu_single, "two_rank_busier_cpu_s": cpu_pair},
        "speedup_whole_blocks": summarize(single)["median"] / summarize(whole)["median"],
        "bytes_per_step": {"two_rank": [r["pair_bytes"] for r in rows],
                           "two_rank_whole_blocks": [r["whole_bytes"] for r in rows],
                           "what": "bytes sent by both ranks in one step (DistContext counts)"},
        "blocks": got["blocks"],
        "representations": got["representations"],
        "kronecker": got["kronecker"],
        "shard_bytes_per_sample": got["shard_bytes_per_sample"],
        "owner": got["owner"],
        "balanced_seconds": got["predicted"],
        "split_blocks": got["split"],
        "whole_blocks_owner": got["whole_owner"],
    }


def case_distributed_step(s: Settings, rates: MachineRates, seed: int) -> dict[str, Any]:
    """Measured 1- vs 2-rank step time (speedup) on the MLP and the CNN, and the modeled
    1–64-rank table of the MLP."""
    hidden, batch = _sizes(s)
    spec = {"hidden": hidden, "batch": batch, "repeats": s.repeats, "warmup": s.warmup,
            "seed": seed, "rates": rates.to_dict()}
    measured = _measure(spec)
    got = measured["mlp"]
    mlp = _model_summary(got, TARGET_SPEEDUP)
    cnn = _model_summary(measured["cnn"], TARGET_SPEEDUP_CNN)
    rows = got["rows"]
    block_seconds = [b["seconds"] for b in got["blocks"]]
    block_sizes = [b["n"] for b in got["blocks"]]
    local = summarize([r["single_local"] for r in rows])["median"]
    update = summarize([r["single_update"] for r in rows])["median"]
    measured_comm = CommRates(**got["comm"])
    networks = [("this machine (gloo loopback, measured)", measured_comm.bytes_per_s,
                  measured_comm.latency_s), *NETWORKS]
    modeled = {
        name: [modeled_step(k, local=local, update=update, block_seconds=block_seconds,
                            block_sizes=block_sizes, rows=batch, comm=CommRates(lat, bw, 2),
                            shard_per_sample=got["shard_bytes_per_sample"],
                            kronecker=got["kronecker"]) for k in MODELED_RANKS]
        for name, bw, lat in networks}
    both = [a >= TARGET_SPEEDUP and b >= TARGET_SPEEDUP_CNN
            for a, b in zip(mlp["per_repeat"], cnn["per_repeat"], strict=True)]
    return {
        "name": "distributed-step",
        "measured": mlp["speedup"],
        "unit": "x faster, 2 ranks vs 1 on the MLP (median step / median step; gloo, 1 thread "
                f"per rank); CNN: {cnn['speedup']:.2f}x; CPU-seconds ratio (not wall clock) "
                f"MLP {mlp['cpu_ratio']:.2f}, CNN {cnn['cpu_ratio']:.2f}",
        "baseline": f"one process on the same global batch ({batch} samples; MLP "
                    f"784→{hidden}→{hidden}→{hidden}→10 on MNIST, 8 blocks; digits CNN, 6 "
                    "blocks; empirical Fisher)",
        "target": f"MLP >= {TARGET_SPEEDUP}, CNN >= {TARGET_SPEEDUP_CNN} (issue 20) where 2 "
                  "cores are free",
        "met": mlp["speedup"] >= TARGET_SPEEDUP and cnn["speedup"] >= TARGET_SPEEDUP_CNN,
        "per_repeat": {"measured": mlp["per_repeat"], "met": both,
                       "what": "1-rank over 2-rank step time within each round (MLP; met: "
                               "MLP and CNN)"},
        "timings": mlp["timings"],
        "speedup_whole_blocks": mlp["speedup_whole_blocks"],
        "bytes_per_step": mlp["bytes_per_step"],
        "blocks": got["blocks"],
        "owner": got["owner"],
        "split_blocks": got["split"],
        "whole_blocks_owner": got["whole_owner"],
        "models": {"mlp": mlp, "cnn": cnn},
        "comm_rates": {**got["comm"], "label": "measured: all-reduce probe of 8 B and 4 MiB"},
        "modeled_scaling": {
            "label": "modeled: measured per-block work (1 rank), per-sample work / R, blocks "
                     "split where predicted faster, LPT makespan of the rest, communication "
                     "volume / bandwidth + latency (measured on this machine, or stated)",
            "networks": {name: {"bytes_per_s": bw, "latency_s": lat}
                         for name, bw, lat in networks},
            "rows": modeled,
        },
    }
