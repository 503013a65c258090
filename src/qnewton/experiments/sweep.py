"""``sweep``: the paper's ablations, one setting varied over a list of values."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qnewton.experiments.checks import check_distinct, check_out, check_values, make_out
from qnewton.experiments.compare import profile_independent
from qnewton.experiments.runs import experiment_rates, run_or_reuse, run_row, run_state
from qnewton.files import write_json_atomic
from qnewton.quantum import HARDWARE_PROFILES
from qnewton.tasks import TaskConfig
from qnewton.training import OPTIMIZERS, TrainConfig
from qnewton.validation import check_choice, check_int, check_positive, check_real

#: ``--param`` name -> (the TrainConfig field it sets, a check of one value, what is allowed).
SWEEP_PARAMS: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "reg": ("reg", lambda v: check_real("reg", v, low=0.0), "finite numbers >= 0"),
    "prune": ("prune_ratio", lambda v: check_real("prune", v, low=0.0, high=1.0, low_open=True),
              "pruning ratios in (0, 1]"),
    "gate-time": ("gate_time", lambda v: check_positive("gate_time", v),
                  "gate times in seconds, finite and > 0"),
    "hidden": ("hidden", lambda v: _whole("hidden", v), "whole numbers >= 1"),
}


def _whole(name: str, value: Any) -> int:
    """An integer >= 1, also given as an integer-valued float (the CLI reads numbers as floats)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_int(name, value, 1)


def _label(value: Any) -> str:
    return f"{value:g}"


def sweep(
    base_config: TrainConfig,
    param: str,
    values: Sequence[float],
    out: str | Path,
    *,
    baseline: str | None = "newton",
    progress: bool = True,
) -> dict[str, Any]:
    """The paper's ablations: vary one setting of ``base_config`` over ``values``.

    ``param`` is one of ``reg`` (>= 0), ``prune`` (pruning ratio in (0, 1]), ``gate-time``
    (seconds > 0; only the modeled time changes, and with it the routing of a policy that can
    route to quantum) or ``hidden`` (network size, an integer >= 1). A ``baseline`` run
    (classical Newton by default) is added for reference, except for ``hidden``.

    Every value, ``out`` and each run directory are checked before anything runs: one bad
    value costs nothing. Finished runs in ``out`` with identical settings are reused.
    """
    check_choice("param", param, SWEEP_PARAMS)
    field, check, allowed = SWEEP_PARAMS[param]
    checked = check_values("values", values, check, f"{allowed} for param {param}")
    # Run directories are named by the value to 6 significant digits: those must differ.
    check_distinct("values", checked, key=_label, show=repr)
    if baseline is not None:
        check_choice("baseline", baseline, OPTIMIZERS)
    if param == "prune" and base_config.prune_count is not None:
        raise ValueError("prune_count must not be set when sweeping param prune (the pruning "
                         f"ratio), got {base_config.prune_count!r}")
    if param == "gate-time" and profile_independent(base_config):
        raise ValueError(
            f"optimizer must be one whose policy can route to quantum when sweeping param "
            f"gate-time (only quantum solves depend on the gate time), got "
            f"{base_config.optimizer!r} with policy "
            f"{base_config.policy or OPTIMIZERS[base_config.optimizer].policy or 'none'}")
    if param == "gate-time" and HARDWARE_PROFILES[base_config.hardware].kind != "gate-count":
        raise ValueError(
            f"hardware must be a gate-count profile (e.g. 'paper', the paper's hypothesis) when "
            f"sweeping param gate-time: {base_config.hardware!r} is "
            f"{HARDWARE_PROFILES[base_config.hardware].kind} and has no gate time")
    configs = []
    for value in checked:
        try:
            configs.append(dataclasses.replace(base_config, **{field: value}))
            if field == "hidden":
                TaskConfig(name=base_config.task, hidden=value, tiny=base_config.tiny)
        except ValueError as exc:  # e.g. hidden must be a multiple of the attention heads
            raise ValueError(f"values must suit param {param}: {exc}") from None
    out = check_out(out, "sweep")
    planned = [(config, out / "runs" / f"{param}={_label(value)}")
               for config, value in zip(configs, checked, strict=True)]
    base_run = None
    if baseline is not None and param != "hidden":
        base_run = (dataclasses.replace(base_config, optimizer=baseline, lr=None),
                    out / "runs" / f"baseline-{baseline}")
    states = {run_dir: run_state(config, run_dir, out)
              for config, run_dir in planned + ([base_run] if base_run else [])}

    make_out(out)
    rates = experiment_rates(states)
    rows = []
    metric = None
    for (config, run_dir), value in zip(planned, checked, strict=True):
        summary = run_or_reuse(config, run_dir, progress, states[run_dir], rates)
        metric = summary["metric"]
        row = run_row(_label(value), run_dir, out, summary, None)
        row["value"] = value
        rows.append(row)
    base_row = None
    if base_run is not None:
        config, run_dir = base_run
        summary = run_or_reuse(config, run_dir, progress, states[run_dir], rates)
        base_row = run_row(baseline, run_dir, out, summary, None)
    result = {"task": base_config.task, "param": param, "optimizer": base_config.optimizer,
              "metric": metric, "values": [r["value"] for r in rows], "rows": rows,
              "baseline": base_row}
    write_json_atomic(out / "sweep.json", result)
    return result
