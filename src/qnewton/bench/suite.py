"""Running the selected cases and writing their results (JSON with every raw timing, markdown).

Every number is **measured** on this machine unless its key or label says ``modeled`` (quantum
times from the cost model, and any extrapolation). Timings on a shared machine are noisy: read
the min/median/max, not a single figure.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from qnewton.bench.cases import BENCH_CASES, CASES, REQUIRED_KEYS
from qnewton.bench.settings import MODES, SETTINGS
from qnewton.calibration import calibrate
from qnewton.files import write_json_atomic
from qnewton.solvers import MachineRates


def machine_info(rates: MachineRates) -> dict[str, Any]:
    """Host, versions, threads and the calibrated rates the classical predictions used."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "calibrated_rates": rates.to_dict(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _error_entry(name: str, exc: Exception) -> dict[str, Any]:
    return {
        "name": name, "measured": None, "unit": "", "baseline": "", "target": "",
        "met": False, "timings": {}, "error": f"{type(exc).__name__}: {exc}",
    }


def _run_case(names: list[str], settings: Any, rates: MachineRates,
              seed: int) -> list[dict[str, Any]]:
    """The entries named ``names``, all produced by one call of their shared case function."""
    result = BENCH_CASES[names[0]](settings, rates, seed)
    produced = {e["name"]: e for e in (result if isinstance(result, list) else [result])}
    missing = [n for n in names if n not in produced]
    if missing:
        raise RuntimeError(f"the case function produced no entry named {missing}")
    for name in names:
        lacking = [k for k in REQUIRED_KEYS if k not in produced[name]]
        if lacking:
            raise RuntimeError(f"entry {name!r} lacks the keys {lacking}")
    return [e for e in produced.values() if e["name"] in names]


def run_suite(
    mode: str = "quick",
    cases: Sequence[str] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the selected cases (default: all, in :data:`CASES` order) in ``mode``.

    A case that raises becomes an entry with ``measured=None`` and its ``error``; the others
    still run. Raises ``ValueError`` for an unknown mode or case name, before running anything.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    selected = list(dict.fromkeys(cases)) if cases else list(CASES)
    for name in selected:
        BENCH_CASES.check(name)
    settings = SETTINGS[mode]
    rates = calibrate()
    out: dict[str, Any] = {
        "machine": machine_info(rates), "mode": mode, "quick": mode != "full", "cases": [],
    }
    started = time.perf_counter()
    done: set[str] = set()
    for name in selected:
        if name in done:
            continue
        # Every selected name measured by the same function comes from this one call.
        group = [n for n in selected if BENCH_CASES[n] is BENCH_CASES[name]]
        done.update(group)
        t0 = time.perf_counter()
        if log:
            log(f"[bench] {', '.join(group)} ...")
        try:
            entries = _run_case(group, settings, rates, seed)
        except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others
            entries = [_error_entry(n, exc) for n in group]
        for e in entries:
            e["case_seconds"] = time.perf_counter() - t0
            out["cases"].append(e)
        if log:
            log(f"[bench] {', '.join(group)} done in {time.perf_counter() - t0:.1f} s")
    out["suite_seconds"] = time.perf_counter() - started
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "error"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def markdown_table(result: dict[str, Any]) -> str:
    """The results as a markdown table (name, measured, unit, baseline, target, met)."""
    m = result["machine"]
    lines = [
        f"# qnewton bench ({result.get('mode', 'quick')})",
        "",
        f"{m['host']}, torch {m['torch']}, {m['threads']} threads, {m['date']}. "
        "All numbers measured on this machine unless labelled modeled.",
        "",
        "| name | measured | unit | baseline | target | met |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for c in result["cases"]:
        cells = [c["name"], _fmt(c["measured"]), c["unit"], c["baseline"], str(c["target"]),
                 "yes" if c["met"] else "**no**"]
        lines.append("| " + " | ".join(x.replace("|", "/") for x in cells) + " |")
        if c.get("note") or c.get("error"):
            notes.append(f"- **{c['name']}**: {c.get('error') or c.get('note')}")
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def to_jsonable(value: Any) -> Any:
    """``value`` with standard-JSON leaves only: non-finite floats become strings (``"inf"``),
    tensors lists, anything else that JSON cannot hold its ``str``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.tolist())
    return str(value)


def write_results(result: dict[str, Any], json_path: Path, markdown_path: Path) -> str:
    """Write the JSON (atomically) and the markdown table; return the table."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, to_jsonable(result))
    table = markdown_table(result)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(table, encoding="utf-8")
    return table
