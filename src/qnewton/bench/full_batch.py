"""Case ``full-batch``: accuracy at equal time and time to target on full-batch problems where
second-order methods are the established winners — QNewton at its defaults against Adam, L-BFGS,
scipy ``least_squares``, sklearn ``LogisticRegression`` and a whole-model Levenberg–Marquardt
reference (docs/method.md §4.13).

Problems: :data:`~qnewton.bench.full_batch_problems.PROBLEMS` (``Settings.fb_problems``);
methods and how one run is timed: :mod:`~qnewton.bench.full_batch_runs`. Every run gets the same
budget of measured training seconds (``Settings.fb_budget``). Before the timed rounds each method
takes ``WARMUP_STEPS`` untimed steps on the tiny version of each problem (the first-call costs of
``torch.func`` and the optimizers are per process, not per size). Then ``Settings.fb_rounds``
rounds run every method on every problem, in alternating order (forward in even rounds, backward
in odd ones); round 0 runs Adam at every learning rate of ``Settings.fb_adam_lrs`` and later
rounds re-run the best one (lowest accuracy at the budget in round 0).

Per problem, the target is the problem's own (a number), or the accuracy at the budget that its
anchor method (``lm``), or the best peer (``best-peer``), reached in every round (the worst of its
rounds); it is fixed after all rounds and each run's time to target is read off its recorded
curve. Rows: one per problem and method,
figure the accuracy at the budget (median over rounds, spread min–max), with the time to target in
the baseline cell. Headline: the share of problems on which QNewton at its defaults reaches the
target no later than the best peer (issue 17's target: at least half); per round, the same share
from that round's runs.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from qnewton.bench.full_batch_problem import FullBatchProblem
from qnewton.bench.full_batch_problems import PROBLEMS
from qnewton.bench.full_batch_runs import (
    METHODS,
    QNEWTON_METHODS,
    applies,
    run_method,
    time_to,
)
from qnewton.bench.settings import Settings
from qnewton.solvers import MachineRates

WARMUP_STEPS = 1
HEADLINE_TARGET = 0.5


def _methods(problem: FullBatchProblem) -> list[str]:
    return [m for m in METHODS if applies(m, problem)]


def _worst(values: list[float]) -> float:
    """The largest (worst) accuracy of a method's rounds; nan when one is not a number."""
    return math.nan if any(math.isnan(v) for v in values) else max(values)


def _target(problem: FullBatchProblem, runs: dict[str, list[dict[str, Any]]]) -> tuple[float, str]:
    """The problem's target metric and where it comes from: its own number, or the accuracy its
    anchor reached at the budget in every round (the worst of its rounds, so the anchor itself
    reaches the target in each)."""
    if isinstance(problem.target, float):
        return problem.target, "issue 17's target"
    worst = {m: _worst([r["accuracy"] for r in rs]) for m, rs in runs.items()}
    if problem.target == "best-peer":
        peers = {m: v for m, v in worst.items() if m not in QNEWTON_METHODS and math.isfinite(v)}
        if not peers:
            return math.nan, "best peer at the budget: no peer finished with a finite metric"
        best = min(peers, key=peers.__getitem__)
        return peers[best], f"best peer at the budget, every round: {best}"
    return worst[problem.target], f"{problem.target} reference at the budget, every round"


def _problem(name: str, s: Settings, rates: MachineRates, seed: int) -> dict[str, Any]:
    """Every round of every method on one problem (rounds interleaved per problem)."""
    problem = PROBLEMS[name](seed, s.fb_tiny)
    methods = _methods(problem)
    warm = PROBLEMS[name](seed, True)
    for m in methods:  # untimed, on the tiny version: the first-call costs are per process
        run_method(warm, m, s.fb_budget, s.fb_evals, rates, s.fb_adam_lrs[0],
                   max_steps=WARMUP_STEPS)
    grid: list[dict[str, Any]] = []
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    best_lr = None
    for r in range(s.fb_rounds):
        for m in (methods if r % 2 == 0 else methods[::-1]):
            if m == "adam" and r == 0:
                grid = [run_method(problem, m, s.fb_budget, s.fb_evals, rates, lr)
                        for lr in s.fb_adam_lrs]
                best = min(grid, key=lambda x: (math.isnan(x["accuracy"]), x["accuracy"]))
                best_lr = best["lr"]
                runs[m].append(best)
            else:
                runs[m].append(run_method(problem, m, s.fb_budget, s.fb_evals, rates,
                                          best_lr if m == "adam" else None))
    target, source = _target(problem, runs)
    for rs in runs.values():
        for run in rs:
            run["seconds_to_target"] = time_to(run["curve"], target, s.fb_budget)
    return {"problem": name, "description": problem.description, "metric": problem.metric_name,
            "target": target, "target_source": source, "runs": runs, "adam_grid": grid,
            "adam_lr": best_lr}


def _spread_text(values: list[float], unit: str = "") -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "not reached"
    med = statistics.median(finite)
    text = f"{med:.3g}{unit}"
    if len(values) > 1:
        text += f" ({min(finite):.3g}–{max(finite):.3g})"
    return text + ("" if len(finite) == len(values) else f", reached {len(finite)}/{len(values)}")


def _row(p: dict[str, Any], method: str) -> dict[str, Any]:
    rs = p["runs"][method]
    accs = [r["accuracy"] for r in rs]
    times = [r["seconds_to_target"] for r in rs]
    statuses = sorted({r["status"] for r in rs})
    lr = f" lr {p['adam_lr']:g}" if method == "adam" else ""
    name = f"{p['problem']}: {method}{lr}"
    target = f"<= {p['target']:.3g} ({p['target_source']})"
    steps = statistics.median(r["steps_in_budget"] for r in rs)
    base = (f"time to target {_spread_text(times, ' s')} (measured); {steps:g} steps in budget; "
            + "; ".join(statuses))
    errors = [s for s in statuses if s.startswith("error")]
    if errors and all(r["status"].startswith("error") and r["steps_in_budget"] == 0 for r in rs):
        return {"name": name, "measured": None, "status": errors[0][:200], "unit": "",
                "baseline": base, "target": target, "met": False}
    # a diverged round (nan) ranks last
    median = statistics.median(math.inf if math.isnan(a) else a for a in accs)
    return {"name": name, "measured": median, "unit": p["metric"] + " at the budget",
            "baseline": base, "target": target, "met": median <= p["target"],
            "per_repeat": {"measured": accs, "met": [a <= p["target"] for a in accs]}}


def _qnewton_wins(p: dict[str, Any], index: int | None) -> bool:
    """Whether QNewton (defaults) reaches the target no later than every peer: in round
    ``index``, or comparing median times (``None``)."""
    def seconds(method: str) -> float:
        times = [r["seconds_to_target"] for r in p["runs"][method]]
        return statistics.median(times) if index is None else times[index]

    ours = seconds("qnewton")
    peers = [seconds(m) for m in p["runs"] if m not in QNEWTON_METHODS]
    return math.isfinite(ours) and ours <= min(peers)


def summary_table(entry: dict[str, Any]) -> str:
    """A plain markdown table of the case: per problem and method, the accuracy at the budget
    and the time to target (median and min–max over rounds, measured)."""
    lines = ["| problem | method | accuracy at budget | time to target (s) | steps | status |",
             "|---|---|---|---|---|---|"]
    for p in entry["problems"]:
        lines.append(f"| **{p['problem']}** | target {p['metric']} <= {p['target']:.3g} "
                     f"({p['target_source']}) | | | | |")
        for method, rs in p["runs"].items():
            lr = f" (lr {p['adam_lr']:g})" if method == "adam" else ""
            statuses = "; ".join(sorted({r["status"] for r in rs}))[:120]
            steps = statistics.median(r["steps_in_budget"] for r in rs)
            lines.append(
                f"| | {method}{lr} | {_spread_text([r['accuracy'] for r in rs])} | "
                f"{_spread_text([r['seconds_to_target'] for r in rs])} | {steps:g} | "
                f"{statuses.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def case_full_batch(s: Settings, rates: MachineRates, seed: int) -> dict[str, Any]:
    """The ``full-batch`` entry."""
    problems = [_problem(name, s, rates, seed) for name in s.fb_problems]
    measured = sum(_qnewton_wins(p, None) for p in problems) / len(problems)
    per_round = [sum(_qnewton_wins(p, i) for p in problems) / len(problems)
                 for i in range(s.fb_rounds)]
    rows = [_row(p, m) for p in problems for m in p["runs"]]
    entry = {
        "name": "full-batch",
        "measured": measured,
        "unit": "share of problems where QNewton (defaults) reaches the target no later than "
        "the best peer",
        "baseline": "best of Adam (best lr of " + ", ".join(f"{x:g}" for x in s.fb_adam_lrs)
        + "), L-BFGS (strong Wolfe), scipy least_squares, sklearn LogisticRegression and the "
        f"whole-model Levenberg-Marquardt reference; {s.fb_budget:g} s of measured training "
        "time per run",
        "target": f">= {HEADLINE_TARGET:g}",
        "met": measured >= HEADLINE_TARGET,
        "per_repeat": {"measured": per_round, "met": [x >= HEADLINE_TARGET for x in per_round],
                       "what": "share of problems won by QNewton in each round"},
        "timings": {p["problem"]: {m: [r["train_seconds"] for r in rs]
                                   for m, rs in p["runs"].items()} for p in problems},
        "rows": rows,
        "problems": problems,
        "note": f"full-batch: {s.fb_rounds} interleaved round(s) of {s.fb_budget:g} s measured "
        f"training time per method and problem; metric evaluated every {s.fb_budget / s.fb_evals:g}"
        " s of training time outside the clock (the time to target's resolution); accuracy at "
        "the budget of the last iterate within it",
    }
    entry["table"] = summary_table(entry)
    return entry
