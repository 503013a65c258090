"""Running the selected cases and writing their results (JSON with every raw timing, markdown).

Every number is **measured** on this machine unless its key or label says ``modeled`` (quantum
times from the cost model, and any extrapolation). The suite pins torch to ``threads`` intra-op
threads (default 1) while it calibrates and measures, and restores the previous count after;
it records the 1-minute/5-minute/15-minute load average before and after each case and decides
each case met / missed / **noisy** by :data:`VERDICT_RULE`.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from qnewton.bench.cases import BENCH_CASES, CASES, REQUIRED_KEYS
from qnewton.bench.settings import MODES, SETTINGS
from qnewton.bench.stats import summarize, verdict
from qnewton.calibration import calibrate
from qnewton.files import write_json_atomic
from qnewton.solvers import MachineRates
from qnewton.validation import check_int

#: How a case is decided (also written into every result file).
VERDICT_RULE = (
    "met/missed only when the headline (median) figure and every interleaved repeat's figure "
    "give the same verdict (a one-sided target outside the repeats' [min, max]) and the 1-minute "
    "load average before and after the case is at most the number of cores; otherwise noisy"
)

#: Largest seed accepted (the data splits seed NumPy, which takes 32-bit seeds).
MAX_SEED = 2**32 - 1


@contextmanager
def pinned_threads(threads: int) -> Iterator[int]:
    """Run the ``with`` body with ``torch.set_num_threads(threads)`` and NumPy/SciPy's BLAS (the
    κ estimators' Lanczos, scipy and sklearn peers) at ``threads`` too; yields torch's previous
    count and restores both afterwards, also when the body raises (Ctrl-C included)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield previous
    finally:
        torch.set_num_threads(previous)


def load_average() -> list[float] | None:
    """``[1 min, 5 min, 15 min]`` load average, or ``None`` where the system gives none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def check_cases(cases: Sequence[str] | None, name: str = "cases") -> list[str]:
    """The selected case names: ``None`` means all (in :data:`CASES` order); otherwise at least
    one, each registered and given once. Errors name the argument ``name``."""
    if cases is None:
        return list(CASES)
    names = list(cases)
    allowed = ", ".join(CASES)
    if not names:
        raise ValueError(f"{name} must name at least one of: {allowed}; got none")
    for case in names:
        if case not in BENCH_CASES:
            raise ValueError(f"{name} must each be one of: {allowed}; got {case!r}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{name} must name each case once; got {', '.join(map(repr, twice))} "
                         "more than once")
    return names


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
        "met": False, "per_repeat": {"measured": [], "met": []}, "timings": {},
        "error": f"{type(exc).__name__}: {exc}",
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
        per = produced[name]["per_repeat"]
        if not (per.get("measured") and len(per["measured"]) == len(per.get("met", ()))):
            raise RuntimeError(f"entry {name!r}: per_repeat needs equally long, non-empty "
                               "'measured' and 'met' lists")
    return [e for e in produced.values() if e["name"] in names]


def decide(entry: dict[str, Any], before: list[float] | None, after: list[float] | None,
           cores: int) -> None:
    """Add ``load_average``, ``spread`` and ``verdict`` (met / missed / noisy / error) to an
    entry, and ``noisy_reasons`` when it is noisy (:data:`VERDICT_RULE`)."""
    entry["load_average"] = {"before": before, "after": after, "cores": cores}
    if entry.get("error"):
        entry["verdict"] = "error"
        return
    per = entry["per_repeat"]
    entry["spread"] = summarize(per["measured"])
    loads = [x[0] if x else None for x in (before, after)]
    entry["verdict"], reasons = verdict(bool(entry["met"]), per["met"], loads, cores)
    if reasons:
        entry["noisy_reasons"] = reasons
    for row in entry.get("rows", ()):
        # detail rows (one per model, task, ...) are decided by the same rule, same loads
        rper = row.get("per_repeat") or {}
        finite = [x for x in rper.get("measured", ()) if x is not None and math.isfinite(x)]
        if finite:
            row["spread"] = summarize(finite)
        if row.get("met") is not None and rper.get("met"):
            row["verdict"], _ = verdict(bool(row["met"]), rper["met"], loads, cores)


def run_suite(
    mode: str = "quick",
    cases: Sequence[str] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    threads: int = 1,
    on_case: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the selected cases (default: all, in :data:`CASES` order) in ``mode`` with torch
    pinned to ``threads`` threads.

    A case that raises becomes an entry with ``measured=None`` and its ``error``; the others
    still run. After each case, ``on_case`` receives the result so far (``complete`` is False
    until the last case is done), so finished cases can be saved before the next one starts.
    Raises ``ValueError`` for an unknown mode, an empty, unknown or repeated case name, a
    negative seed or fewer than one thread, before running anything.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    selected = check_cases(cases)
    seed = check_int("seed", seed, 0, MAX_SEED)
    threads = check_int("threads", threads, 1)
    settings = SETTINGS[mode]
    cores = os.cpu_count() or 1
    with pinned_threads(threads) as previous:
        rates = calibrate()
        machine = machine_info(rates) | {"threads_before": previous, "threads_pinned": threads}
        out: dict[str, Any] = {
            "machine": machine, "mode": mode, "quick": mode != "full", "seed": seed,
            "verdict_rule": VERDICT_RULE, "complete": False, "cases": [],
        }
        started = time.perf_counter()
        done: set[str] = set()
        for name in selected:
            if name in done:
                continue
            # Every selected name measured by the same function comes from this one call.
            group = [n for n in selected if BENCH_CASES[n] is BENCH_CASES[name]]
            done.update(group)
            if log:
                log(f"[bench] {', '.join(group)} ...")
            before = load_average()
            t0 = time.perf_counter()
            try:
                entries = _run_case(group, settings, rates, seed)
            except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others
                entries = [_error_entry(n, exc) for n in group]
            seconds = time.perf_counter() - t0
            after = load_average()
            for e in entries:
                e["case_seconds"] = seconds
                decide(e, before, after, cores)
                out["cases"].append(e)
            out["suite_seconds"] = time.perf_counter() - started
            if log:
                verdicts = ", ".join(f"{e['name']}: {e['verdict']}" for e in entries)
                log(f"[bench] done in {seconds:.1f} s ({verdicts}; load "
                    f"{_load_text(before)} -> {_load_text(after)})")
            if on_case:
                on_case(out)
    out["complete"] = True
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "error"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _load_text(load: list[float] | None) -> str:
    return "n/a" if not load else f"{load[0]:.2f}"


_VERDICT_CELL = {"met": "yes", "missed": "**no**", "error": "error"}


def markdown_table(result: dict[str, Any]) -> str:
    """The results as a markdown table: name, measured (median figure), spread (the repeats'
    min–max), unit, baseline, target, 1-minute load average before → after, and the verdict."""
    m = result["machine"]
    cores = m.get("cpu_count") or "?"
    title = f"# qnewton bench ({result.get('mode', 'quick')})"
    if not result.get("complete", True):
        title += (" — interrupted" if result.get("interrupted") else " — partial") + (
            f", {len(result['cases'])} case(s) finished")
    lines = [
        title,
        "",
        f"{m['host']}, torch {m['torch']}, {m['threads']} thread(s) pinned of {cores} cores, "
        f"{m['date']}. All numbers measured on this machine unless labelled modeled. "
        "Spread: min–max of the figure over the interleaved repeats; load: 1-minute load "
        "average before → after the case. A case is noisy unless the median and every repeat "
        "give the same verdict and the load stayed ≤ the cores.",
        "",
        "| name | measured | spread | unit | baseline | target | load | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for c in result["cases"]:
        spread = c.get("spread")
        spread_cell = (f"{_fmt(spread['min'])}–{_fmt(spread['max'])} (n={spread['n']})"
                       if spread else "")
        loads = c.get("load_average") or {}
        load_cell = f"{_load_text(loads.get('before'))} → {_load_text(loads.get('after'))}"
        v = c.get("verdict") or ("met" if c["met"] else "missed")
        met_cell = _VERDICT_CELL.get(v, f"noisy (median: {'yes' if c['met'] else 'no'})")
        cells = [c["name"], _fmt(c["measured"]), spread_cell, c["unit"], c["baseline"],
                 str(c["target"]), load_cell, met_cell]
        lines.append("| " + " | ".join(x.replace("|", "/") for x in cells) + " |")
        lines += [_row_line(row) for row in c.get("rows", ())]
        text = "; ".join(x for x in (c.get("error"), "; ".join(c.get("noisy_reasons", ())),
                                     c.get("note")) if x)
        if text:
            notes.append(f"- **{c['name']}**: {text}")
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def _row_line(row: dict[str, Any]) -> str:
    """A detail row of an entry (``entry["rows"]``: one model, task or size), under it; no load
    cell (the entry's applies), no verdict cell for a row without a target (``met`` None)."""
    spread = row.get("spread")
    spread_cell = (f"{_fmt(spread['min'])}–{_fmt(spread['max'])} (n={spread['n']})"
                   if spread else "")
    if row.get("met") is None:
        met_cell = ""
    else:
        v = row.get("verdict") or ("met" if row["met"] else "missed")
        met_cell = _VERDICT_CELL.get(v, f"noisy (median: {'yes' if row['met'] else 'no'})")
    measured = row.get("measured")
    cells = ["↳ " + str(row["name"]),
             _fmt(measured) if measured is not None else str(row.get("status", "n/a")),
             spread_cell,
             str(row.get("unit", "")), str(row.get("baseline", "")), str(row.get("target", "")),
             "", met_cell]
    return "| " + " | ".join(x.replace("|", "/") for x in cells) + " |"


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


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(result: dict[str, Any], json_path: Path, markdown_path: Path) -> str:
    """Write the JSON and the markdown table, each atomically (a temporary file, then a
    rename: a reader never sees half a file); return the table."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, to_jsonable(result))
    table = markdown_table(result)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(markdown_path, table)
    return table
