"""``compare``: several optimizers on one task, one table per hardware profile.

A hardware profile only changes what a run does through its quantum solves (their modeled time,
and with it the routing of the ``cost`` policy). An optimizer whose policy can never route to
quantum (every first-order optimizer, and Newton with the ``classical`` policy) therefore runs
once, and its row is paired with every profile of the table, marked
:data:`~qnewton.experiments.runs.SHARED_MARK`. The others run once per profile.

With ``repeats`` R > 1 every run is repeated R times in interleaved order (all runs once, then
all again, each round starting one run later), so that slow phases of the machine spread over
all optimizers instead of landing on one; rows show the medians and the min-max spread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qnewton.experiments.checks import (
    check_distinct,
    check_out,
    check_repeats,
    check_target,
    make_out,
)
from qnewton.experiments.runs import (
    SHARED_MARK,
    experiment_rates,
    repeated_row,
    run_or_reuse,
    run_row,
    run_state,
    warm_up,
)
from qnewton.files import write_json_atomic
from qnewton.quantum import HARDWARE_PROFILES
from qnewton.scheduling import POLICIES
from qnewton.training import OPTIMIZERS, TrainConfig
from qnewton.validation import check_choice, check_optional, check_positive


@dataclass(frozen=True)
class Profile:
    """A column of a comparison: a registered hardware profile under a label, optionally with
    its gate time overridden (``reproduce`` compares the paper's profile at 1 ns and 1 as)."""

    label: str
    hardware: str
    gate_time: float | None = None

    def __post_init__(self) -> None:
        check_choice("hardware", self.hardware, HARDWARE_PROFILES)
        check_optional(check_positive, "gate_time", self.gate_time)


def profile_independent(config: TrainConfig) -> bool:
    """Whether no hardware profile can change a run of ``config``: a first-order optimizer, or a
    Newton-family one whose policy (``config.policy`` or the optimizer's) never routes to
    quantum."""
    spec = OPTIMIZERS[config.optimizer]
    if not spec.newton:
        return True
    return not POLICIES[config.policy or spec.policy].can_route_quantum


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison (all its repeats) and the profiles its rows are paired with."""

    name: str
    optimizer: str
    config: TrainConfig
    profiles: tuple[Profile, ...]
    shared: bool

    def run_dirs(self, out: Path, repeats: int) -> list[Path]:
        """``runs/<name>``, then ``runs/<name>.repeat2`` ... for the further repeats."""
        return [out / "runs" / (self.name if r == 0 else f"{self.name}.repeat{r + 1}")
                for r in range(repeats)]


@dataclass(frozen=True)
class ComparisonPlan:
    """A checked comparison: nothing of it has run yet (see :func:`plan_comparison`)."""

    base_config: TrainConfig
    out: Path
    runs: tuple[PlannedRun, ...]
    profiles: tuple[Profile, ...]
    target: float | None
    repeats: int
    states: dict[Path, str]


def plan_comparison(base_config: TrainConfig, optimizers: Sequence[str],
                    profiles: Sequence[Profile], out: str | Path, *,
                    target_accuracy: float | None = None, repeats: int = 1) -> ComparisonPlan:
    """Check every argument, ``out`` and each run directory a comparison would write; return
    the plan, or raise ``ValueError`` naming the argument. Nothing is run or created."""
    if isinstance(optimizers, str) or not optimizers:
        raise ValueError(f"optimizers must list at least one optimizer, got {optimizers!r}")
    if not profiles:
        raise ValueError("hardware must list at least one hardware profile")
    for name in optimizers:
        check_choice("optimizers", name, OPTIMIZERS)
    check_distinct("optimizers", optimizers)
    check_distinct("hardware", profiles, key=lambda p: p.label, show=lambda p: p.label)
    repeats = check_repeats(repeats)
    out = check_out(out, "comparison")
    target = check_target("target_accuracy", target_accuracy, base_config)
    runs = []
    for name in optimizers:
        configs = [dataclasses.replace(
            base_config, optimizer=name, hardware=p.hardware,
            gate_time=p.gate_time if p.gate_time is not None else base_config.gate_time,
            lr=None if base_config.optimizer != name else base_config.lr) for p in profiles]
        if profile_independent(configs[0]):
            runs.append(PlannedRun(name, name, configs[0], tuple(profiles), True))
        else:
            runs += [PlannedRun(f"{name}@{p.label}", name, c, (p,), False)
                     for p, c in zip(profiles, configs, strict=True)]
    states = {d: run_state(run.config, d, out) for run in runs for d in run.run_dirs(out, repeats)}
    return ComparisonPlan(base_config, out, tuple(runs), tuple(profiles), target, repeats, states)


def run_comparison(plan: ComparisonPlan, *, progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) the planned runs, interleaving repeats, and write ``comparison.json``."""
    out = plan.out
    make_out(out)
    rates = experiment_rates(plan.states)
    if rates is not None:
        warm_up(plan.base_config, rates)
    summaries: dict[Path, dict[str, Any]] = {}
    order = list(plan.runs)
    for r in range(plan.repeats):
        shift = r % len(order)
        for run in order[shift:] + order[:shift]:
            run_dir = run.run_dirs(out, plan.repeats)[r]
            summaries[run_dir] = run_or_reuse(run.config, run_dir, progress,
                                              plan.states[run_dir], rates)
    metric = next(iter(summaries.values()))["metric"]
    rows = []
    for profile in plan.profiles:
        for run in plan.runs:
            if profile not in run.profiles:
                continue
            label = f"{run.optimizer}@{profile.label}"
            if run.shared:
                label += f" {SHARED_MARK}"
            repeats = [run_row(label, d, out, summaries[d], plan.target)
                       for d in run.run_dirs(out, plan.repeats)]
            row = repeated_row(repeats)
            row.update(hardware=profile.hardware, profile=profile.label, shared_run=run.shared,
                       run_hardware=summaries[run.run_dirs(out, plan.repeats)[0]]["hardware"])
            rows.append(row)
    result = {"task": plan.base_config.task, "metric": metric, "target": plan.target,
              "hardware": [p.label for p in plan.profiles], "repeats": plan.repeats,
              "rows": rows}
    write_json_atomic(out / "comparison.json", result)
    return result


def compare(
    base_config: TrainConfig,
    optimizers: Sequence[str],
    hardware: Sequence[str],
    out: str | Path,
    *,
    target_accuracy: float | None = None,
    repeats: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Run each optimizer on each hardware profile and tabulate (see the module docstring).

    ``target_accuracy`` (a level of the task's test metric) adds each run's time to reach it;
    ``repeats`` runs everything that many times, interleaved. All arguments, ``out`` and the
    run directories are checked before anything runs. Finished runs in ``out`` with identical
    settings are reused, interrupted ones resumed; runs with other settings are refused.
    """
    if isinstance(hardware, str):
        raise ValueError(f"hardware must be a list of profile names, got {hardware!r}")
    for name in hardware:
        check_choice("hardware", name, HARDWARE_PROFILES)
    profiles = [Profile(name, name) for name in hardware]
    plan = plan_comparison(base_config, optimizers, profiles, out,
                           target_accuracy=target_accuracy, repeats=repeats)
    return run_comparison(plan, progress=progress)
