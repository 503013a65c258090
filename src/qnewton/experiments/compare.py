"""``compare``: several optimizers on one task, one table (Newton family once per profile)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qnewton.experiments.runs import run_or_reuse, run_row, warm_up
from qnewton.files import write_json_atomic
from qnewton.quantum import HARDWARE_PROFILES
from qnewton.training import OPTIMIZERS, TrainConfig
from qnewton.validation import check_choice


def compare(
    base_config: TrainConfig,
    optimizers: Sequence[str],
    hardware: Sequence[str],
    out: str | Path,
    *,
    target: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run each optimizer (Newton family once per hardware profile) and tabulate.

    First-order optimizers do not depend on the hardware profile and run once. Finished runs in
    ``out`` with identical settings are reused, interrupted ones resumed.
    """
    for name in optimizers:
        check_choice("optimizers", name, OPTIMIZERS)
    for name in hardware:
        check_choice("hardware", name, HARDWARE_PROFILES)
    if not optimizers or not hardware:
        raise ValueError("compare needs at least one optimizer and one hardware profile")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    warm_up(base_config)
    rows = []
    metric = None
    for name in optimizers:
        newton = OPTIMIZERS[name].newton
        profiles = list(hardware) if newton else [hardware[0]]
        for profile in profiles:
            label = f"{name}@{profile}" if newton else name
            config = dataclasses.replace(base_config, optimizer=name, hardware=profile, lr=None
                                         if base_config.optimizer != name else base_config.lr)
            run_dir = out / "runs" / label
            summary = run_or_reuse(config, run_dir, progress)
            metric = summary["metric"]
            rows.append(run_row(label, run_dir, out, summary, target))
    result = {"task": base_config.task, "metric": metric, "target": target,
              "hardware": list(hardware), "rows": rows}
    write_json_atomic(out / "comparison.json", result)
    return result


