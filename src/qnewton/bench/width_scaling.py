"""Case ``width-scaling``: QNewton step time, peak memory and the parameters moved by Newton
directions, against the hidden width of the task MLP (``Settings.width_hidden``) at each batch of
``Settings.width_batches``, with an Adam step at the same point for scale.

Every point runs in a **fresh Python process** (``python -m qnewton.bench.width_scaling``;
the smoke mode of the tests measures in-process), so that no allocation of an earlier, larger
point is still held by the allocator. Peak memory is the growth of the process's peak resident
set during one QNewton step (the second: the first is a warm-up): ``VmHWM`` after resetting it
(``/proc/self/clear_refs``) minus ``VmRSS`` before the step. It counts everything the step
touched in RAM — torch's CPU tensors, the allocator's retention, Python objects — not only live
tensors (``memory_method`` says how it was taken; where the peak cannot be reset, ``ru_maxrss``
is used and the figure includes set-up).
Then QNewton and Adam steps are timed in interleaved rounds with the suite's thread count.

Figure: the smallest fraction of parameter-steps moved by Newton directions over all points
(``newton_parameter_fraction`` of the ledger; target 1: nothing fell back to a gradient step);
rows give each point's step time (measured), its ratio to Adam, peak memory and Newton count.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from typing import Any

import torch

from qnewton.bench.settings import Settings
from qnewton.bench.stats import time_interleaved
from qnewton.bench.workloads import (
    adam_lr,
    build_qnewton,
    closure_for,
    first_order_step,
    load_workload,
)
from qnewton.solvers import MachineRates

#: Seconds a point's process may take before it is reported as failed.
POINT_TIMEOUT_S = 900


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure_point(task: str, hidden: int, batch: int, repeats: int, warmup: int, seed: int,
                  threads: int, rates: dict[str, Any], tiny: bool = False) -> dict[str, Any]:
    """One point, in this process: peak-memory growth of the first QNewton step, then
    interleaved QNewton and Adam steps."""
    torch.set_num_threads(threads)
    machine = MachineRates.from_dict(rates)
    w = load_workload(f"{task}-mlp", seed, batch=batch, hidden=hidden, tiny=tiny)
    model, adam_model = w.make_model(), w.make_model()
    opt = build_qnewton(model, machine, None, seed)
    adam = torch.optim.Adam(adam_model.parameters(), lr=adam_lr())
    counters = {"q": 0, "a": 0}

    def q_step() -> None:
        idx = w.batch_indices(counters["q"], seed)
        counters["q"] += 1
        opt.step(closure_for(model, w.x_train[idx], w.y_train[idx]))

    def a_step() -> None:
        idx = w.batch_indices(counters["a"], seed)
        counters["a"] += 1
        first_order_step(adam, adam_model, w.x_train[idx], w.y_train[idx])

    q_step()  # warm-up: one-off allocations and lazy imports are not the step's memory
    a_step()
    rss_before = _status_kib("VmRSS")
    if rss_before is not None and _reset_peak():
        q_step()
        peak, method = _status_kib("VmHWM"), "VmHWM after clear_refs reset - VmRSS before"
    else:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        q_step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "ru_maxrss growth (peak not resettable: includes set-up)"
    (q_t, a_t), _ = time_interleaved([q_step, a_step], repeats, max(0, warmup - 1))
    summary = opt.ledger.summary()
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "hidden": hidden, "batch": w.batch, "parameters": n_params,
        "largest_block": max(p.numel() for p in model.parameters()),
        "qnewton_seconds": q_t, "adam_seconds": a_t,
        "peak_memory_bytes": max(0, (peak or 0) - (rss_before or 0)) * 1024,
        "memory_method": method,
        "newton_parameter_fraction": summary["newton_parameter_fraction"],
        "newton_parameters_per_step": summary["parameter_updates"]["newton"] / counters["q"],
        "parameter_updates": summary["parameter_updates"],
        "fallback_reasons": summary["fallback_reasons"],
        "workload": w.description,
    }


def _run_point(args: dict[str, Any], fresh_process: bool) -> dict[str, Any]:
    if not fresh_process:
        return measure_point(**args)
    proc = subprocess.run(
        [sys.executable, "-m", "qnewton.bench.width_scaling", json.dumps(args)],
        capture_output=True, text=True, timeout=POINT_TIMEOUT_S, env=dict(os.environ),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"width point h={args['hidden']} b={args['batch']} failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def case_width_scaling(s: Settings, rates: MachineRates, seed: int) -> dict[str, Any]:
    """The ``width-scaling`` entry."""
    points = []
    for batch in s.width_batches:
        for hidden in s.width_hidden:
            points.append(_run_point({
                "task": s.width_task, "hidden": hidden, "batch": batch, "repeats": s.repeats,
                "warmup": s.warmup, "seed": seed, "threads": torch.get_num_threads(),
                "rates": rates.to_dict(), "tiny": s.cost_tiny,
            }, s.width_fresh_process))
    rows = []
    for p in points:
        q_ms = [1e3 * t for t in p["qnewton_seconds"]]
        ratio = statistics.median(p["qnewton_seconds"]) / statistics.median(p["adam_seconds"])
        frac = p["newton_parameter_fraction"]
        rows.append({
            "name": f"b{p['batch']} h{p['hidden']} ({p['parameters']} params)",
            "measured": statistics.median(q_ms), "unit": "ms per QNewton step",
            "baseline": f"{ratio:.3g}x Adam ({1e3 * statistics.median(p['adam_seconds']):.3g} "
                        f"ms); peak +{p['peak_memory_bytes'] / 2**20:.1f} MiB RSS; Newton "
                        f"{p['newton_parameters_per_step']:.0f}/{p['parameters']} params "
                        f"(fraction {'n/a' if frac is None else f'{frac:.3g}'})",
            "target": "", "met": None, "per_repeat": {"measured": q_ms, "met": []},
        })
    fractions = [p["newton_parameter_fraction"] or 0.0 for p in points]
    worst = min(fractions)
    return {
        "name": "width-scaling",
        "measured": worst,
        "unit": "smallest Newton parameter fraction over the points (ledger)",
        "baseline": f"{s.width_task} MLP, hidden {list(s.width_hidden)}, batch "
                    f"{list(s.width_batches)}; Adam step at each point; one process per point",
        "target": "= 1 (every parameter moved by a Newton direction, no fallback)",
        "met": worst >= 1.0 - 1e-12,
        "per_repeat": {"measured": [worst], "met": [worst >= 1.0 - 1e-12],
                       "what": "the fraction counts every measured step (it does not vary "
                               "by round)"},
        "timings": {f"b{p['batch']}_h{p['hidden']}": {"qnewton": p["qnewton_seconds"],
                                                     "adam": p["adam_seconds"]}
                    for p in points},
        "rows": rows,
        "points": points,
        "note": "peak memory: growth of the peak resident set during one QNewton step, in a "
                "fresh process per point (" + (points[0]["memory_method"] if points else "")
                + ")",
    }


if __name__ == "__main__":
    print(json.dumps(measure_point(**json.loads(sys.argv[1]))))
