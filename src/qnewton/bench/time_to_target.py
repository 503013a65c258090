"""Case ``time-to-target``: measured training time until the test accuracy first reaches a target
(digits 0.90, MNIST 0.85 in the quick and full modes), QNewton against first- and second-order
peers, all in one process with the suite's pinned thread count.

Methods (each from the same initial weights and mini-batch sequence):

* ``qnewton``: the CLI's settings (:data:`~qnewton.bench.workloads.QNEWTON_SETTINGS`), the task's
  default batch; untuned, as a user gets it;
* ``adam``: ``torch.optim.Adam``, the best learning rate of ``Settings.ttt_adam_lrs``;
* ``lbfgs``: ``torch.optim.LBFGS`` (strong-Wolfe line search, history 20) on the whole training
  set, one iteration per step;
* ``kfac``: K-FAC from curvlinops (:func:`~qnewton.bench.peers.kfac_direction`, Monte-Carlo
  Fisher, heuristic damping :data:`KFAC_DAMPING`), best lr of ``Settings.ttt_kfac_lrs``;
  reported as skipped without the ``bench`` extra;
* ``ggn-cg``: matrix-free whole-network GGN Newton-CG (:func:`~qnewton.bench.peers.
  ggn_cg_direction`, damping :data:`GGN_DAMPING`, :data:`GGN_CG_ITERATIONS` CG iterations), best
  lr of ``Settings.ttt_ggn_lrs``.

Only training steps are timed: the test accuracy is evaluated every ``Settings.ttt_eval_every``
steps outside the clock (its time is reported as ``eval_seconds``), so a time to target has the
resolution of that many steps. A run stops at the target, after ``ttt_max_steps`` steps, after
``ttt_max_seconds`` training seconds, or at a non-finite loss. The first round runs every
configuration of every grid; ``ttt_rounds − 1`` further rounds re-run each method's best
configuration, in alternating order. A grid configuration is stopped once its training time
exceeds the best time to target of the same method so far (it can no longer be the best).
Figure: QNewton's time / the best peer's time, worst task (target ≤ 1: QNewton no slower than
the fastest peer); rows give the ratio to each peer.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from qnewton.bench.peers import (
    KFAC_SKIPPED,
    apply_step,
    curvlinops_available,
    ggn_cg_direction,
    kfac_direction,
)
from qnewton.bench.settings import Settings
from qnewton.bench.workloads import (
    Workload,
    build_qnewton,
    closure_for,
    first_order_step,
    load_workload,
)
from qnewton.solvers import MachineRates

KFAC_DAMPING = 1e-3
GGN_DAMPING = 1e-2
GGN_CG_ITERATIONS = 10
LBFGS_HISTORY = 20
#: Loss evaluations per L-BFGS step for the line search (torch's default, 1.25 × max_iter = 1,
#: leaves the strong-Wolfe search one evaluation: it returns t = 0 and L-BFGS stalls).
LBFGS_MAX_EVAL = 25
PEERS = ("adam", "lbfgs", "kfac", "ggn-cg")
#: The QNewton runs measured, by method name → curvature kind (None: the CLI's default): the
#: verdict is the default's; ``qnewton-kfac`` (Kronecker blocks) is recorded beside it.
QNEWTON_VARIANTS = {"qnewton": None, "qnewton-kfac": "kfac"}


def _stepper(method: str, lr: float | None, w: Workload, rates: MachineRates, seed: int
             ) -> tuple[torch.nn.Module, Callable[[int], float]]:
    """A fresh model and ``step(i) -> loss`` for one method and configuration."""
    model = w.make_model()
    if method in QNEWTON_VARIANTS:
        kind = QNEWTON_VARIANTS[method]
        opt = build_qnewton(model, rates, kind, seed)

        def step(i: int) -> float:
            idx = w.batch_indices(i, seed)
            return float(opt.step(closure_for(model, w.x_train[idx], w.y_train[idx], kind)))
    elif method == "adam":
        adam = torch.optim.Adam(model.parameters(), lr=lr)

        def step(i: int) -> float:
            idx = w.batch_indices(i, seed)
            return first_order_step(adam, model, w.x_train[idx], w.y_train[idx])
    elif method == "lbfgs":
        lbfgs = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=1, max_eval=LBFGS_MAX_EVAL,
                                  history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            lbfgs.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(w.x_train), w.y_train)
            loss.backward()
            return loss

        def step(i: int) -> float:
            return float(lbfgs.step(closure).detach())
    else:
        def step(i: int) -> float:
            idx = w.batch_indices(i, seed)
            x, y = w.x_train[idx], w.y_train[idx]
            if method == "kfac":
                direction, loss = kfac_direction(model, x, y, KFAC_DAMPING)
            else:
                direction, loss = ggn_cg_direction(model, x, y, GGN_DAMPING, GGN_CG_ITERATIONS)
            apply_step(model, direction, lr)
            return loss
    return model, step


def train_to_target(method: str, lr: float | None, w: Workload, target: float, s: Settings,
                    rates: MachineRates, seed: int, budget: float = math.inf) -> dict[str, Any]:
    """One training run: measured training seconds until the test accuracy first reaches
    ``target`` (``inf`` if it does not within the caps), with the accuracy curve. ``budget``:
    stop earlier, once the run is slower than that (another configuration of the same method
    already reached the target in that time, so this one cannot be the best)."""
    model, step = _stepper(method, lr, w, rates, seed)
    train_s = eval_s = 0.0
    steps, reached, status, curve = 0, math.inf, "cap", []
    limit = min(s.ttt_max_seconds, budget)
    while steps < s.ttt_max_steps and train_s < limit:
        t0 = time.perf_counter()
        loss = step(steps)
        train_s += time.perf_counter() - t0
        steps += 1
        if not math.isfinite(loss):
            status = "non-finite loss"
            break
        if steps % s.ttt_eval_every == 0:
            t0 = time.perf_counter()
            acc = w.accuracy(model)
            eval_s += time.perf_counter() - t0
            curve.append([steps, train_s, acc])
            if acc >= target:
                reached, status = train_s, "reached"
                break
    if status == "cap" and train_s >= limit and limit < s.ttt_max_seconds:
        status = "stopped: slower than the method's best configuration"
    return {"method": method, "lr": lr, "seconds_to_target": reached, "status": status,
            "steps": steps, "train_seconds": train_s, "eval_seconds": eval_s,
            "final_accuracy": curve[-1][2] if curve else None, "curve": curve}


def _grid(method: str, s: Settings) -> tuple[float | None, ...]:
    return {"qnewton": (None,), "qnewton-kfac": (None,), "lbfgs": (1.0,), "adam": s.ttt_adam_lrs,
            "kfac": s.ttt_kfac_lrs, "ggn-cg": s.ttt_ggn_lrs}[method]


def _task(task: str, target: float, s: Settings, rates: MachineRates, seed: int
          ) -> dict[str, Any]:
    w = load_workload(f"{task}-mlp", seed, tiny=s.ttt_tiny)
    methods = [*QNEWTON_VARIANTS, *(p for p in PEERS if p != "kfac" or curvlinops_available())]
    runs: dict[str, list[dict[str, Any]]] = {}
    configs = [(m, lr) for m in methods for lr in _grid(m, s)]
    for m, lr in configs:  # round 0: every configuration, each stopped once it cannot win
        budget = min((r["seconds_to_target"] for r in runs.get(m, [])), default=math.inf)
        runs.setdefault(m, []).append(train_to_target(m, lr, w, target, s, rates, seed, budget))
    best = {m: min(r, key=lambda x: (x["seconds_to_target"], -(x["final_accuracy"] or 0)))
            for m, r in runs.items()}
    rounds = {m: [b["seconds_to_target"]] for m, b in best.items()}
    for r in range(1, s.ttt_rounds):
        for m in (methods if r % 2 == 0 else methods[::-1]):
            again = train_to_target(m, best[m]["lr"], w, target, s, rates, seed)
            rounds[m].append(again["seconds_to_target"])
    return {"task": task, "target": target, "workload": w.description, "runs": runs,
            "best": best, "seconds_per_round": rounds}


def _ratio(ours: float, peer: float) -> float:
    """QNewton time / a peer's time; a peer that never reached the target gives 0 when
    QNewton did, ``inf`` when only the peer did, and nan when neither did."""
    if math.isinf(peer):
        return 0.0 if math.isfinite(ours) else math.nan
    return ours / peer


def _describe(b: dict[str, Any], target: float) -> str:
    lr = "" if b["lr"] is None else f" lr {b['lr']:g}"
    if b["status"] == "reached":
        return f"{b['method']}{lr}: {b['seconds_to_target']:.3g} s, {b['steps']} steps"
    return (f"{b['method']}{lr}: not {target:g} ({b['status']}; {b['steps']} steps, "
            f"{b['train_seconds']:.3g} s, acc {b['final_accuracy'] or 0:.3f})")


def case_time_to_target(s: Settings, rates: MachineRates, seed: int) -> dict[str, Any]:
    """The ``time-to-target`` entry."""
    tasks = [_task(t, acc, s, rates, seed) for t, acc in s.ttt_targets]
    rows, worst, worst_rounds = [], [], []
    for t in tasks:
        per = {m: statistics.median(x) for m, x in t["seconds_per_round"].items()}
        ours = per["qnewton"]
        qtext = _describe(t["best"]["qnewton"], t["target"])
        peers = [p for p in PEERS if p in per]
        reached = [p for p in peers if math.isfinite(per[p])]
        best_peer = min(reached, key=per.__getitem__) if reached else None
        for p in PEERS:
            name = f"{t['task']} {t['target']:g}: qnewton / {p}"
            if p not in per:
                rows.append({"name": name, "measured": None, "status": KFAC_SKIPPED,
                             "unit": "", "baseline": "", "target": "", "met": None})
                continue
            ratio = _ratio(ours, per[p])
            rounds = [_ratio(a, b) for a, b in zip(t["seconds_per_round"]["qnewton"],
                                                   t["seconds_per_round"][p], strict=True)]
            ok = [not x > 1 for x in rounds]  # nan (neither reached): no verdict against it
            rows.append({"name": name, "measured": None if math.isnan(ratio) else ratio,
                         "status": "neither reached the target", "unit": "x (time / time)",
                         "baseline": f"{_describe(t['best'][p], t['target'])}; {qtext}",
                         "target": "<= 1", "met": not ratio > 1,
                         "per_repeat": {"measured": rounds, "met": ok}})
        t["best_peer"] = best_peer
        kfac_ours = per["qnewton-kfac"]
        t["qnewton_kfac_vs_best_peer"] = None if best_peer is None else _ratio(
            kfac_ours, per[best_peer])
        t["qnewton_kfac"] = _describe(t["best"]["qnewton-kfac"], t["target"])
        if best_peer is None:
            worst.append(0.0 if math.isfinite(ours) else math.inf)
            worst_rounds.append([worst[-1]] * s.ttt_rounds)
        else:
            worst.append(ours / per[best_peer])
            worst_rounds.append([a / b for a, b in zip(
                t["seconds_per_round"]["qnewton"], t["seconds_per_round"][best_peer],
                strict=True)])
    measured = max(worst)
    per_round = [max(r[i] for r in worst_rounds) for i in range(s.ttt_rounds)]
    skipped = "" if curvlinops_available() else f"; kfac {KFAC_SKIPPED}"
    return {
        "name": "time-to-target",
        "measured": measured,
        "unit": "x the best peer's time to target (QNewton / best peer, worst task)",
        "baseline": "best of " + ", ".join(PEERS) + " (each its best lr of a small grid), "
        "measured training seconds, evaluation excluded" + skipped,
        "target": "<= 1 (" + ", ".join(f"{t} {a:g}" for t, a in s.ttt_targets) + ")",
        "met": not measured > 1,
        "per_repeat": {"measured": per_round, "met": [not x > 1 for x in per_round],
                       "what": "worst task's ratio in each round (round 0: the grid runs)"},
        "timings": {t["task"]: t["seconds_per_round"] for t in tasks},
        "rows": rows,
        "tasks": tasks,
        "note": f"test accuracy evaluated every {s.ttt_eval_every} steps outside the clock; "
        f"caps {s.ttt_max_steps} steps / {s.ttt_max_seconds:g} s per run"
        + (f"; {KFAC_SKIPPED.replace('skipped: ', 'kfac skipped: ')}" if skipped else ""),
    }
