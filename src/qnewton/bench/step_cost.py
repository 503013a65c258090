"""Cases ``step-cost``, ``step-cost-ggn`` and ``step-overhead``: one QNewton step (the CLI's
settings, :data:`~qnewton.bench.workloads.QNEWTON_SETTINGS`) against one Adam step at the same
batch, per model, measured together.

For every workload of ``Settings.cost_workloads`` (digits MLP, MNIST MLP at batch 128 and 512, a
CNN, a GRU, a transformer encoder and a BatchNorm CNN on the digits images), a QNewton step with
the empirical Fisher, one with the GGN and an Adam step (each on its own copy of the model, the
same mini-batch sequence) are timed in interleaved rounds. Figures:

* ``step-cost``: QNewton (Fisher) step / Adam step, worst model (target ≤ 5×);
* ``step-cost-ggn``: the same with the GGN (target ≤ 30×);
* ``step-cost-kfac``: the same with Kronecker-factored blocks (``curvature="kfac"``, ≤ 10×);
* ``step-overhead``: the scheduler's share of the QNewton step, (estimation + scheduling) /
  all measured ledger phases of that step, worst model and kind (target ≤ 10%).

The three names map to :func:`case_step_cost` (one measurement); each entry carries one detail
row per model (``rows``), decided like the entry, with the path each block's per-sample rows took
(``paths``: one-pass, one-pass+residual, functional, or loop with its reason; docs/method.md §4.7)
and, per model, the blocks that took the one-backward-pass-per-sample loop (``loop_blocks``).
"""

from __future__ import annotations

import statistics
import warnings
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
    qnewton_config,
)
from qnewton.curvature import (
    CurvatureConfig,
    blocks_from_module,
    compute_curvature,
    curvature_closure,
)
from qnewton.solvers import MachineRates

#: Targets: QNewton step / Adam step per curvature kind, and the scheduler's share of a step.
RATIO_TARGETS = {"fisher": 5.0, "ggn": 30.0, "kfac": 10.0}  # fisher: issue 19's 5×
OVERHEAD_TARGET = 0.10
#: Ledger phases counted as scheduler overhead.
OVERHEAD_PHASES = ("estimation", "scheduling")


def overhead_share(phases: dict[str, float]) -> float:
    """(estimation + scheduling) / all measured phases of one step; 0 for an empty step."""
    total = sum(phases.values())
    return sum(phases.get(k, 0.0) for k in OVERHEAD_PHASES) / total if total > 0 else 0.0


def _measure(label: str, workload: str, batch: int | None, s: Settings, rates: MachineRates,
             seed: int) -> dict[str, Any]:
    """Interleaved rounds of a Fisher step, a GGN step and an Adam step on one workload."""
    w = load_workload(workload, seed, batch=batch, tiny=s.cost_tiny)
    fns, opts, phases = [], {}, {}
    counts: dict[str, list[int]] = {}
    for kind in RATIO_TARGETS:
        model = w.make_model()
        opt = build_qnewton(model, rates, kind, seed)
        opts[kind], phases[kind], counts[kind] = opt, [], []
        counter = iter(range(10**9))

        def step(model: Any = model, opt: Any = opt, kind: str = kind, counter: Any = counter
                 ) -> None:
            # one refresh period of steps per call (after the first, which resolves it): with
            # curvature reuse a single step is a building or a reusing one, and neither is the
            # cost per step a run pays
            n = opt.curvature_schedule.every if opt.step_count else 1
            before = dict(opt.ledger.measured)
            for _ in range(n):
                idx = w.batch_indices(next(counter), seed)
                opt.step(closure_for(model, w.x_train[idx], w.y_train[idx], kind))
            phases[kind].append({k: v - before.get(k, 0.0)
                                 for k, v in opt.ledger.measured.items()})
            counts[kind].append(n)

        fns.append(step)
    adam_model = w.make_model()
    adam = torch.optim.Adam(adam_model.parameters(), lr=adam_lr())
    adam_counter = iter(range(10**9))

    def adam_step() -> None:
        idx = w.batch_indices(next(adam_counter), seed)
        first_order_step(adam, adam_model, w.x_train[idx], w.y_train[idx])

    times, _ = time_interleaved([*fns, adam_step], s.repeats, s.warmup)
    adam_t = times[-1]
    out: dict[str, Any] = {"label": label, "workload": w.description, "batch": w.batch,
                           "adam_seconds": adam_t, "kinds": {},
                           "paths": {kind: block_paths(w, kind, seed) for kind in RATIO_TARGETS}}
    for (kind, opt), totals in zip(opts.items(), times, strict=False):
        t = [total / n for total, n in zip(totals, counts[kind][s.warmup:], strict=True)]
        steps = phases[kind][s.warmup:]
        summary = opt.ledger.summary()
        out["kinds"][kind] = {
            "seconds": t,
            "ratio": statistics.median(t) / statistics.median(adam_t),
            "ratio_per_round": [a / b for a, b in zip(t, adam_t, strict=True)],
            "overhead_per_step": [overhead_share(p) for p in steps],
            "phases_per_step": steps,
            "steps_per_round": counts[kind][s.warmup:],
            "curvature_built": opt.ledger.curvature_computed,
            "curvature_reused": opt.ledger.curvature_reused,
            "newton_parameter_fraction": summary["newton_parameter_fraction"],
            "fallback_reasons": summary["fallback_reasons"],
        }
    return out


def block_paths(w: Any, kind: str, seed: int) -> dict[str, str]:
    """Which path each block's per-sample rows take on this workload (untimed, after the timed
    rounds): one curvature build on the first mini-batch, as a QNewton step runs it."""
    model = w.make_model()
    idx = w.batch_indices(0, seed)
    with curvature_closure():
        ret = closure_for(model, w.x_train[idx], w.y_train[idx], kind)()
    losses, outputs = ret if isinstance(ret, tuple) else (ret, None)
    config = qnewton_config(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the loop's reason is in the result
        result = compute_curvature(losses, blocks_from_module(model, config.grouping),
                                   CurvatureConfig(kind=config.curvature), outputs=outputs,
                                   over_budget="matrix-free")
    paths = dict(result.paths)
    for name in result.matrix_free:
        paths[name] = "matrix-free (over the memory budget)"
    if result.substituted:
        paths["(kind)"] = result.substituted
    return paths


def _row(name: str, measured: float, per_round: list[float], unit: str, baseline: str,
         limit: float) -> dict[str, Any]:
    return {"name": name, "measured": measured, "unit": unit, "baseline": baseline,
            "target": f"<= {limit:g}", "met": measured <= limit,
            "per_repeat": {"measured": per_round, "met": [x <= limit for x in per_round]}}


def _ms(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1e3:.3g} ms"


def case_step_cost(s: Settings, rates: MachineRates, seed: int) -> list[dict[str, Any]]:
    """The ``step-cost``, ``step-cost-ggn``, ``step-cost-kfac`` and ``step-overhead`` entries,
    in that order."""
    results = [_measure(f"{name} b{batch or 'default'}", name, batch, s, rates, seed)
               for name, batch in s.cost_workloads]
    for r in results:
        r["label"] = r["label"].replace("bdefault", f"b{r['batch']}")
    settings = qnewton_config().to_dict()
    entries = []
    for kind, limit in RATIO_TARGETS.items():
        name = "step-cost" if kind == "fisher" else f"step-cost-{kind}"
        rows = [_row(r["label"], r["kinds"][kind]["ratio"], r["kinds"][kind]["ratio_per_round"],
                     "x Adam step", f"Adam {_ms(r['adam_seconds'])}, QNewton "
                     f"{_ms(r['kinds'][kind]['seconds'])}; Newton fraction "
                     f"{r['kinds'][kind]['newton_parameter_fraction']}", limit)
                for r in results]
        for row, r in zip(rows, results, strict=True):
            row["paths"] = r["paths"][kind]
        worst = max(row["measured"] for row in rows)
        per_round = [max(row["per_repeat"]["measured"][i] for row in rows)
                     for i in range(s.repeats)]
        entries.append({
            "name": name,
            "measured": worst,
            "unit": f"x an Adam step (QNewton {kind}, worst of {len(rows)} models, "
                    "median/median)",
            "baseline": "torch.optim.Adam step (CLI default lr) at the same batch, same model, "
                        "interleaved",
            "target": f"<= {limit:g}x",
            "met": worst <= limit,
            "per_repeat": {"measured": per_round, "met": [x <= limit for x in per_round],
                           "what": "worst model's QNewton/Adam ratio within each round"},
            "timings": {r["label"]: {"qnewton": r["kinds"][kind]["seconds"],
                                     "adam": r["adam_seconds"]} for r in results},
            "rows": rows,
            "loop_blocks": {r["label"]: sorted(b for b, p in r["paths"][kind].items()
                                               if p.startswith("loop"))
                            for r in results},
            "qnewton_settings": settings,
        })
    rows = []
    for r in results:
        for kind in RATIO_TARGETS:
            shares = r["kinds"][kind]["overhead_per_step"]
            rows.append(_row(f"{r['label']} {kind}", 100 * statistics.median(shares),
                             [100 * x for x in shares], "% of step",
                             f"QNewton step {_ms(r['kinds'][kind]['seconds'])}",
                             100 * OVERHEAD_TARGET))
    worst = max(row["measured"] for row in rows)
    per_round = [max(row["per_repeat"]["measured"][i] for row in rows) for i in range(s.repeats)]
    entries.append({
        "name": "step-overhead",
        "measured": worst,
        "unit": "% of the QNewton step (worst model and kind, median step)",
        "baseline": "whole measured step (all Ledger phases)",
        "target": f"<= {100 * OVERHEAD_TARGET:g}% ({' + '.join(OVERHEAD_PHASES)})",
        "met": worst <= 100 * OVERHEAD_TARGET,
        "per_repeat": {"measured": per_round,
                       "met": [x <= 100 * OVERHEAD_TARGET for x in per_round],
                       "what": "worst model/kind share in each timed step"},
        "timings": {f"{r['label']} {k}": r["kinds"][k]["phases_per_step"]
                    for r in results for k in RATIO_TARGETS},
        "rows": rows,
        "models": results,
        "qnewton_settings": settings,
    })
    return entries
