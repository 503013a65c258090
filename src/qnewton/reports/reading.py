"""Reading what a run, a comparison, a sweep or a reproduction wrote, for the reports.

Reports only read files: they import nothing of the code that wrote them (only
:mod:`qnewton.files`, :mod:`qnewton.registry` and the crossover definition). Every file goes
through :mod:`qnewton.files`, so the reports apply the same torn-line rule as the rest of
qnewton: a torn *last* line of a JSON-lines file (a run killed mid-write) is dropped with a
warning; any other unreadable line makes that file unavailable, again with a warning naming the
file and the problem.

Two lists collect what a reader should know, and nothing is skipped silently: **warnings** are
integrity problems (a file damaged, missing or disagreeing with another; ``qnewton report`` prints
them to stderr and the page shows them at the top), **notes** are remarks on what a report leaves
out because the run did not record it (no evaluation, no exact κ, ...).
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


def read_optional_json(path: Path, warnings: list[str], unreadable: set[str]) -> Any:
    """Parsed JSON of ``path``; None when it is absent, or when it is unreadable (then with a
    warning, and its name added to ``unreadable``)."""
    if not path.is_file():
        return None
    try:
        return read_json(path, what=path.name)
    except RunFileError as exc:
        warnings.append(f"{exc}; its data is not shown in this report.")
        unreadable.add(path.name)
        return None


def read_required_json(path: Path) -> dict[str, Any]:
    """The JSON object a report is built from (``comparison.json``, ...); ValueError if it is
    unreadable or not an object, since there is then nothing to report."""
    data = read_json(path, what=path.name)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def read_rows(path: Path, warnings: list[str], unreadable: set[str]) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file: none when it is absent, or when it is corrupt (then with a
    warning, and its name added to ``unreadable``). A torn last line is dropped with a warning."""
    try:
        lines = read_jsonl_file(path)
    except RunFileError as exc:
        warnings.append(f"{exc}. Its data is not shown in this report.")
        unreadable.add(path.name)
        return []
    if lines.torn_last_line:
        warnings.append(f"{path.name}: last line was cut short (run killed mid-write?); ignored")
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


def solved(solves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The solve records that ran a solver (what the ledger counts as quantum/classical solves;
    a record whose solver is "none" was decided but not run)."""
    return [s for s in solves if s.get("solver", "?") != "none"]


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
    #: Remarks on what the report leaves out because the run did not record it.
    notes: list[str] = field(default_factory=list)
    #: Integrity problems: files damaged, missing, or disagreeing with each other.
    warnings: list[str] = field(default_factory=list)
    #: Names of the run's files that exist but could not be read (their data is left out).
    unreadable_files: set[str] = field(default_factory=set)
    #: Why summary.json's figures are not used ("missing", "unreadable", "not a JSON object");
    #: None when they are.
    summary_problem: str | None = None

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
    def hardware_label(self) -> str:
        """The profile name with the hypothesis it stands for (e.g. the paper's), as the run's
        summary labelled it; the name alone for runs written before labels existed."""
        label = self.summary.get("hardware_label") if self.summary else None
        return str(label) if label else self.hardware

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
        run was killed before writing one (or summary.json cannot be used)."""
        if self.summary:
            return self.summary, "summary.json"
        last = self.steps[-1] if self.steps else {}
        vals = dict(last)
        vals["steps"] = last.get("step")
        vals["status"] = f"unknown (summary.json {self.summary_problem or 'missing'})"
        evals = self.evaluations()
        if evals and self.metric:
            key = f"test_{self.metric}"
            vals[key] = evals[-1][key]
            vals["test_loss"] = evals[-1].get("test_loss")
            vals["metric_at_step"] = evals[-1].get("step")
        return vals, "the last row of steps.jsonl"


def _summary_warning(problem: str, steps: list[dict[str, Any]], detail: str,
                     steps_unreadable: bool) -> str:
    """The one warning about a summary.json whose figures cannot be used."""
    why = {"missing": "summary.json is missing: the run was killed before it finished, or is "
                      "still running",
           "not a JSON object": "summary.json is valid JSON but not an object"}.get(problem, detail)
    if steps:
        return (f"{why}. The final figures come from the last row of steps.jsonl (step "
                f"{fmt_step(steps[-1].get('step'))}); per-phase times are not available.")
    other = "is unreadable too" if steps_unreadable else "has no rows either"
    return f"{why}. The final figures are unknown: steps.jsonl {other}."


def fmt_step(value: Any) -> str:
    x = finite(value)
    return "?" if x is None else str(int(x))


def load_run(path: Path) -> RunData:
    """Read a run directory; damaged or missing files become warnings, never exceptions."""
    warnings: list[str] = []
    notes: list[str] = []
    unreadable: set[str] = set()
    config = read_optional_json(path / "config.json", warnings, unreadable)
    if not isinstance(config, dict):
        if "config.json" not in unreadable:
            warnings.append("config.json is missing or not a JSON object: the run's settings "
                            "are unknown.")
        config = {}
    summary_warnings: list[str] = []
    summary = read_optional_json(path / "summary.json", summary_warnings, unreadable)
    problem = None
    if summary_warnings:
        problem = "unreadable"
    elif not (path / "summary.json").is_file():
        problem = "missing"
    elif not isinstance(summary, dict):
        problem = "not a JSON object"
    if problem is not None:
        summary = None
    steps = read_rows(path / "steps.jsonl", warnings, unreadable)
    no_step = [r for r in steps if finite(r.get("step")) is None]
    if no_step:
        warnings.append(f"steps.jsonl: {len(no_step)} row(s) without a step number ignored.")
    steps = sorted((r for r in steps if finite(r.get("step")) is not None),
                   key=lambda r: finite(r["step"]))
    if not steps and "steps.jsonl" not in unreadable:
        notes.append("steps.jsonl has no rows yet: nothing to plot over training.")
    if problem is not None:
        detail = summary_warnings[0].removesuffix("; its data is not shown in this report.") \
            if summary_warnings else ""
        warnings.insert(0, _summary_warning(problem, steps, detail,
                                            "steps.jsonl" in unreadable))
    solves = read_rows(path / "solves.jsonl", warnings, unreadable)
    events = read_rows(path / "events.jsonl", warnings, unreadable)
    return RunData(path, config, steps, solves, events, summary, notes, warnings, unreadable,
                   problem)


# -- comparisons and sweeps -------------------------------------------------------------------
def _object_rows(data: dict[str, Any], what: str, warnings: list[str]) -> list[dict[str, Any]]:
    rows = data.get("rows")
    if not isinstance(rows, list):
        warnings.append(f"{what} has no list of rows: there is nothing to tabulate.")
        return []
    kept = [r for r in rows if isinstance(r, dict)]
    if len(kept) < len(rows):
        warnings.append(f"{what}: {len(rows) - len(kept)} row(s) that are not JSON objects "
                        "ignored.")
    return kept


def load_comparison(d: Path, warnings: list[str]) -> dict[str, Any]:
    """comparison.json with its object rows (anything else dropped with a warning)."""
    data = read_required_json(d / "comparison.json")
    data["rows"] = _object_rows(data, "comparison.json", warnings)
    return data


def comparison_runs(d: Path, data: dict[str, Any], warnings: list[str]
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
                warnings.append(f"run directory {rd} of {row.get('label')} not found or has no "
                                "steps.jsonl: its curves are skipped.")
        else:
            warnings.append(f"row {row.get('label')} names no run_dir: its curves are skipped.")
        out.append((row, run))
    return out


def load_sweep(d: Path, warnings: list[str]) -> dict[str, Any]:
    """sweep.json with its rows sorted by swept value (rows without a numeric value dropped,
    with a warning)."""
    data = read_required_json(d / "sweep.json")
    rows = _object_rows(data, "sweep.json", warnings)
    valued = [r for r in rows if finite(r.get("value")) is not None]
    if len(valued) < len(rows):
        warnings.append(f"sweep.json: {len(rows) - len(valued)} row(s) without a finite "
                        "numeric value ignored.")
    valued.sort(key=lambda r: finite(r["value"]))
    data["rows"] = valued
    return data


def quantum_share(row: dict[str, Any]) -> float | None:
    """Quantum solves / all solves of a sweep row; None when it recorded no solves."""
    q = finite(row.get("quantum_solves")) or 0.0
    c = finite(row.get("classical_solves")) or 0.0
    return q / (q + c) if q + c > 0 else None
