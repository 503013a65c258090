"""The settings a run actually used, for the report's summary table: a setting left at ``None``
in ``config.json`` (the optimizer's, task's or profile's default) is shown with the value that
default resolved to and where it came from, never as a bare dash."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qnewton.quantum import HARDWARE_PROFILES, get_profile
from qnewton.tasks import TASKS
from qnewton.training.optimizers import OPTIMIZERS

#: Settings of ``config.json`` shown in the summary table, in order.
SHOWN = ("epochs", "batch_size", "seed", "curvature", "policy", "qlsa", "readout")


def _default(key: str, cfg: Mapping[str, Any], solves: list[Mapping[str, Any]]
             ) -> tuple[Any, str] | None:
    """``(value, where it came from)`` of a setting left at ``None``; ``None`` if unknown."""
    if key == "batch_size" and cfg.get("task") in TASKS:
        return TASKS[cfg["task"]].default_batch_size, f"the {cfg['task']} task's default"
    optimizer = cfg.get("optimizer")
    if key == "policy" and optimizer in OPTIMIZERS:
        spec = OPTIMIZERS[optimizer]
        if not spec.newton:
            return "none", f"{optimizer} is a first-order optimizer"
        return spec.policy, f"the {optimizer} optimizer's default"
    if key == "readout":
        used = sorted({str(s["readout"]) for s in solves if s.get("readout")})
        if used:
            return ", ".join(used), "the profile's default, as recorded in solves.jsonl"
        hw = cfg.get("hardware")
        if hw in HARDWARE_PROFILES:
            return get_profile(hw).default_readout, f"the {hw} profile's default"
    return None


def settings_rows(cfg: Mapping[str, Any], solves: list[Mapping[str, Any]]
                  ) -> list[tuple[str, str]]:
    """``(label, value)`` per :data:`SHOWN` setting present in ``cfg`` (``config.json``'s
    ``config``), defaults resolved (:func:`_default`)."""
    rows = []
    for key in SHOWN:
        if key not in cfg:
            continue
        value = cfg[key]
        if value is not None:
            rows.append((f"config: {key}", str(value)))
            continue
        resolved = _default(key, cfg, solves)
        rows.append((f"config: {key}", "— (a default; not recorded)" if resolved is None
                     else f"{resolved[0]} ({resolved[1]})"))
    return rows
