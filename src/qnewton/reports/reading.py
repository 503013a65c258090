"""Reading what a run, a comparison, a sweep or a reproduction wrote, for the reports.

Reports only read files: they import nothing of the code that wrote them (only
:mod:`qnewton.files`, :mod:`qnewton.registry` and the crossover definition). Every file goes
through :mod:`qnewton.files`, so the reports apply the same torn-line rule as the rest of
qnewton: a torn *last* line of a JSON-lines file (a run killed mid-write) is dropped with a note;
any other unreadable line makes that file unavailable, again with a note naming the file and the
problem.
Notes are collected in a list and shown at the top of the report; nothing is skipped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qnewton.files import RunFileError, read_json, read_jsonl_file


def num(value: Any) -> float | None:
    """A float from a JSON value ("inf"/"nan" strings included); None when absent/not numeric."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def finite(value: Any) -> float | None:
    x = num(value)
    return x if x is not None and math.isfinite(x) else None


def read_optional_json(path: Path, notes: list[str], unreadable: set[str]) -> Any:
    """Parsed JSON of ``path``; None when it is absent, or when it is unreadable (then with a
    note, and its name added to ``unreadable``)."""
    if not path.is_file():
        return None
    try:
        return read_json(path, what=path.name)
    except RunFileError as exc:
        notes.append(f"{exc}; its data is not shown in this report.")
        unreadable.add(path.name)
        return None


def read_required_json(path: Path) -> dict[str, Any]:
    """The JSON object a report is built from (``comparison.json``, ...); ValueError if it is
    unreadable or not an object, since there is then nothing to report."""
    data = read_json(path, what=path.name)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def read_rows(path: Path, notes: list[str], unreadable: set[str]) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file: none when it is absent, or when it is corrupt (then with a
    note, and its name added to ``unreadable``). A torn last line is dropped with a note."""
    try:
        lines = read_jsonl_file(path)
    except RunFileError as exc:
        notes.append(f"{exc}. Its data is not shown in this report.")
        unreadable.add(path.name)
        return []
    if lines.torn_last_line:
        notes.append(f"{path.name}: last line was cut short (run killed mid-write?); ignored")
    return lines.rows


def total_of(row: dict[str, Any]) -> float | None:
    """``total_seconds`` of a row, or measured − emulation + modeled when only parts are given."""
    t = finite(row.get("total_seconds"))
    if t is not None:
        return t
    m = finite(row.get("measured_seconds"))
    if m is None:
        return None
    return m - (finite(row.get("emulation_seconds")) or 0.0) + (
        finite(row.get("modeled_quantum_seconds")) or 0.0)


def solve_step(solve: dict[str, Any]) -> int | None:
    """The steps.jsonl step a solve belongs to (solves count 0-based, steps rows 1-based)."""
    x = finite(solve.get("step"))
    return None if x is None else int(x) + 1


# -- runs -------------------------------------------------------------------------------------
@dataclass
class RunData:
    """Everything a run directory holds that the reports show."""

    path: Path
    config: dict[str, Any]
    steps: list[dict[str, Any]]
    solves: list[dict[str, Any]]
    events: list[dict[str, Any]]
    summary: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    #: Names of the run's files that exist but could not be read (their data is left out).
    unreadable_files: set[str] = field(default_factory=set)

    @property
    def cfg(self) -> dict[str, Any]:
        inner = self.config.get("config")
        return inner if isinstance(inner, dict) else {}

    def get(self, key: str, default: Any = None) -> Any:
        """A run attribute from summary.json, else config.json's config."""
        if self.summary and self.summary.get(key) is not None:
            return self.summary[key]
        return self.cfg.get(key, default)

    @property
    def hardware(self) -> str:
        hw = self.get("hardware")
        if hw:
            return str(hw)
        return "none" if self.summary or self.cfg else "unknown"

    @property
    def optimizer(self) -> str:
        return str(self.get("optimizer") or "unknown optimizer")

    @property
    def metric(self) -> str | None:
        m = self.summary.get("metric") if self.summary else None
        if m in ("accuracy", "perplexity"):
            return m
        for row in self.steps:
            if "test_accuracy" in row:
                return "accuracy"
            if "test_perplexity" in row:
                return "perplexity"
        return None

    def evaluations(self) -> list[dict[str, Any]]:
        key = f"test_{self.metric}" if self.metric else None
        if key is None:
            return []
        return [r for r in self.steps if finite(r.get(key)) is not None]

    def blocks(self) -> list[str]:
        """Names of the Hessian blocks that were solved, in order of first solve."""
        seen: dict[str, None] = {}
        for s in self.solves:
            seen.setdefault(str(s.get("block", "?")), None)
        return list(seen)

    def solves_of(self, block: str) -> list[dict[str, Any]]:
        return [s for s in self.solves if str(s.get("block", "?")) == block]

    def final_values(self) -> tuple[dict[str, Any], str]:
        """Final totals and where they come from: summary.json, or the last steps row when the
        run was killed before writing one."""
        if self.summary:
            return self.summary, "summary.json"
        last = self.steps[-1] if self.steps else {}
        vals = dict(last)
        vals["steps"] = last.get("step")
        vals["status"] = "unknown: summary.json missing (run killed?)"
        evals = self.evaluations()
        if evals and self.metric:
            key = f"test_{self.metric}"
            vals[key] = evals[-1][key]
            vals["test_loss"] = evals[-1].get("test_loss")
            vals["metric_at_step"] = evals[-1].get("step")
        return vals, "the last row of steps.jsonl"


def load_run(path: Path) -> RunData:
    notes: list[str] = []
    unreadable: set[str] = set()
    config = read_optional_json(path / "config.json", notes, unreadable)
    summary = read_optional_json(path / "summary.json", notes, unreadable)
    if not isinstance(config, dict):
        notes.append("config.json missing or not an object: configuration unknown.")
        config = {}
    if summary is not None and not isinstance(summary, dict):
        summary = None
    steps = read_rows(path / "steps.jsonl", notes, unreadable)
    no_step = [r for r in steps if finite(r.get("step")) is None]
    if no_step:
        notes.append(f"steps.jsonl: {len(no_step)} row(s) without a step number ignored.")
    steps = sorted((r for r in steps if finite(r.get("step")) is not None),
                   key=lambda r: finite(r["step"]))
    if not steps and "steps.jsonl" not in unreadable:
        notes.append("steps.jsonl has no rows yet: nothing to plot over training.")
    solves = read_rows(path / "solves.jsonl", notes, unreadable)
    events = read_rows(path / "events.jsonl", notes, unreadable)
    return RunData(path, config, steps, solves, events, summary, notes, unreadable)


# -- comparisons and sweeps -------------------------------------------------------------------
def load_comparison(d: Path) -> dict[str, Any]:
    data = read_required_json(d / "comparison.json")
    rows = data.get("rows")
    data["rows"] = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    return data


def comparison_runs(d: Path, data: dict[str, Any], notes: list[str]
                    ) -> list[tuple[dict[str, Any], RunData | None]]:
    """Each comparison row with its run directory's data (None where it cannot be found)."""
    out = []
    for row in data["rows"]:
        rd = row.get("run_dir")
        run = None
        if rd:
            p = d / str(rd)
            if (p / "steps.jsonl").is_file():
                run = load_run(p)
            else:
                notes.append(f"run directory {rd} of {row.get('label')} not found or has no "
                             "steps.jsonl: its curves are skipped.")
        else:
            notes.append(f"row {row.get('label')} names no run_dir: its curves are skipped.")
        out.append((row, run))
    return out


def load_sweep(d: Path) -> dict[str, Any]:
    """sweep.json with its rows sorted by swept value (rows without a numeric value dropped)."""
    data = read_required_json(d / "sweep.json")
    rows = data.get("rows")
    rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    rows = [r for r in rows if finite(r.get("value")) is not None]
    rows.sort(key=lambda r: finite(r["value"]))
    data["rows"] = rows
    return data


def quantum_share(row: dict[str, Any]) -> float | None:
    """Quantum solves / all solves of a sweep row; None when it recorded no solves."""
    q = finite(row.get("quantum_solves")) or 0.0
    c = finite(row.get("classical_solves")) or 0.0
    return q / (q + c) if q + c > 0 else None
