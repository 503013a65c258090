"""``sweep``: the paper's ablations, one setting varied over a list of values."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qnewton.experiments.runs import run_or_reuse, run_row
from qnewton.files import write_json_atomic
from qnewton.training import TrainConfig

SWEEP_PARAMS = {
    "reg": "reg",
    "prune": "prune_ratio",
    "gate-time": "gate_time",
    "hidden": "hidden",
}




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

    ``param`` is one of ``reg``, ``prune`` (pruning ratio), ``gate-time`` (seconds; modeled
    time only changes, and with it the cost policy's routing) or ``hidden`` (network size).
    A ``baseline`` run (classical Newton by default) is added for reference.
    """
    if param not in SWEEP_PARAMS:
        raise ValueError(f"param must be one of {', '.join(SWEEP_PARAMS)}; got {param!r}")
    if not values:
        raise ValueError("values must list at least one value")
    field = SWEEP_PARAMS[param]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    metric = None
    for value in values:
        cast = int(value) if field == "hidden" else float(value)
        config = dataclasses.replace(base_config, **{field: cast})
        run_dir = out / "runs" / f"{param}={value:g}"
        summary = run_or_reuse(config, run_dir, progress)
        metric = summary["metric"]
        row = run_row(f"{value:g}", run_dir, out, summary, None)
        row["value"] = cast
        rows.append(row)
    base_row = None
    if baseline is not None and param not in ("hidden",):
        config = dataclasses.replace(base_config, optimizer=baseline, lr=None)
        run_dir = out / "runs" / f"baseline-{baseline}"
        summary = run_or_reuse(config, run_dir, progress)
        base_row = run_row(baseline, run_dir, out, summary, None)
    result = {"task": base_config.task, "param": param, "optimizer": base_config.optimizer,
              "metric": metric, "values": [r["value"] for r in rows], "rows": rows,
              "baseline": base_row}
    write_json_atomic(out / "sweep.json", result)
    return result


