"""Integrity checks: do a run's logs agree with its summary (and a comparison with its runs)?

Training writes every file of a run from one ledger (:mod:`qnewton.training`), so in an intact
run directory

* ``steps.jsonl`` holds one row for step 0 (the evaluation before training) and one for each
  step 1 … S, where S is ``summary.json``'s ``steps``;
* ``solves.jsonl`` holds exactly the solves ``summary.json`` counts: ``quantum_solves`` records
  routed quantum and ``classical_solves`` routed classically (records whose solver is ``"none"``
  are not counted), all of them for steps ≤ S;
* the last row of ``steps.jsonl`` of a completed run carries the same cumulative seconds and
  solve counts as ``summary.json``, and ``total_seconds = measured − emulation + modeled``;
* a comparison row repeats its run's summary figures.

Whatever breaks one of these becomes a warning naming the file, the numbers on both sides and
what the report does about it. :func:`check_run` only reads :class:`~.reading.RunData`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from qnewton.reports.reading import RunData, finite, num, solved

#: The cumulative figures a completed run's last steps.jsonl row shares with summary.json.
SHARED_TOTALS = ("measured_seconds", "emulation_seconds", "modeled_quantum_seconds",
                 "total_seconds", "quantum_solves", "classical_solves")
#: What a comparison row copies from its run's summary.json (row key, summary key or None for
#: the metric).
ROW_FIGURES = (("measured_seconds", "measured_seconds"),
               ("modeled_quantum_seconds", "modeled_quantum_seconds"),
               ("total_seconds", "total_seconds"), ("quantum_solves", "quantum_solves"),
               ("classical_solves", "classical_solves"), ("final_metric", None))


def ranges(numbers: Iterable[int]) -> str:
    """``1, 3–5, 9`` for the sorted distinct ``numbers``."""
    nums = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}–{nums[j]}")
        i = j + 1
    return ", ".join(parts)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


def summary_steps(run: RunData) -> int | None:
    """The step count summary.json reports; None without a usable summary."""
    s = finite(run.summary.get("steps")) if run.summary else None
    return None if s is None else int(s)


def interrupted(run: RunData) -> bool:
    """Whether summary.json says the run stopped before completing (an interrupt or a
    non-finite loss): its last step may be counted without all of its rows written."""
    return bool(run.summary) and str(run.summary.get("status")) != "completed"


def check_steps(run: RunData) -> list[str]:
    """steps.jsonl against summary.json's step count: missing, extra and repeated steps."""
    if "steps.jsonl" in run.unreadable_files:
        return []
    numbers = [int(finite(r["step"])) for r in run.steps]
    out: list[str] = []
    repeated = sorted(n for n, k in Counter(numbers).items() if k > 1)
    if repeated:
        out.append(f"steps.jsonl has more than one row for step(s) {ranges(repeated)} (rows of "
                   "two runs mixed, or a resume that did not truncate the file); the curves "
                   "show every row.")
    present = set(numbers)
    total = summary_steps(run)
    if total is None:
        if present:
            gaps = set(range(min(present), max(present) + 1)) - present
            if gaps:
                out.append(f"steps.jsonl skips step(s) {ranges(gaps)}: rows are missing "
                           "in the middle of the file.")
        return out
    missing = set(range(total + 1)) - present
    extra = {n for n in present if n > total or n < 0}
    if missing == {total} and interrupted(run):
        missing = set()  # stopped between counting the step and writing its row
    if missing:
        last = max(present) if present else None
        if last is not None and all(m > last for m in missing):
            out.append(
                f"steps.jsonl has {len(run.steps)} row(s) ending at step {last}, but "
                f"summary.json says the run took {total} steps: the rows for steps "
                f"{ranges(missing)} are missing (the file was cut short or overwritten). The "
                f"curves stop at step {last}; the final figures come from summary.json.")
        else:
            out.append(
                f"steps.jsonl lacks the rows for step(s) {ranges(missing)} of the {total + 1} "
                f"it should hold (step 0 before training, then steps 1–{total} as summary.json "
                "says): the curves have gaps there.")
    if extra:
        out.append(f"steps.jsonl has rows for step(s) {ranges(extra)}, outside the 0–{total} "
                   "summary.json reports (rows of another run appended, or a stale "
                   "summary.json).")
    return out


def counted_solves(solves: list[dict[str, Any]]) -> tuple[int, int]:
    """(quantum, classical) solves as the ledger counts them (solver "none" not counted)."""
    done = solved(solves)
    quantum = sum(1 for s in done if s.get("choice") == "quantum")
    return quantum, len(done) - quantum


def _reference_counts(run: RunData) -> tuple[int, int, str, int | None] | None:
    """(quantum, classical, source, steps) the solves should match: summary.json's, else the
    cumulative counts of steps.jsonl's last row."""
    if run.summary:
        q = finite(run.summary.get("quantum_solves"))
        c = finite(run.summary.get("classical_solves"))
        if q is not None and c is not None:
            return int(q), int(c), "summary.json", summary_steps(run)
        return None
    if run.steps and "steps.jsonl" not in run.unreadable_files:
        last = run.steps[-1]
        q, c = finite(last.get("quantum_solves")), finite(last.get("classical_solves"))
        if q is not None and c is not None:
            return int(q), int(c), f"the last row of steps.jsonl (step {int(last['step'])})", \
                int(finite(last["step"]))
    return None


def check_solves(run: RunData) -> list[str]:
    """solves.jsonl against the solve counts of summary.json (or of the last steps row)."""
    if "solves.jsonl" in run.unreadable_files:
        return []
    ref = _reference_counts(run)
    if ref is None:
        return []
    want_q, want_c, source, total = ref
    got_q, got_c = counted_solves(run.solves)
    if (got_q, got_c) == (want_q, want_c):
        return []
    steps = sorted({int(x) + 1 for x in (finite(s.get("step")) for s in run.solves)
                    if x is not None})
    covering = (f" covering steps {steps[0]}–{steps[-1]}" if steps else "")
    over = f" over {total} steps" if total is not None else ""
    have, want = got_q + got_c, want_q + want_c
    if have < want and interrupted(run) and total is not None and steps and steps[-1] >= total - 1:
        return []  # the interrupted step's solves were counted but not yet written
    if have < want:
        why = (f"{want - have} solve record(s) are missing (the file was cut short or "
               "overwritten)")
    elif have > want:
        stale = "a stale summary.json" if source == "summary.json" else "steps.jsonl cut short"
        why = (f"{have - want} more record(s) than counted (records of another run appended, "
               f"or {stale})")
    else:
        why = "the split between quantum and classical differs (the files come from different runs)"
    return [f"solves.jsonl holds {have} solve(s) ({got_q} quantum, {got_c} classical)"
            f"{covering}, but {source} counts {want} ({want_q} quantum, {want_c} classical)"
            f"{over}: {why}. The Hessian plots, the per-block table and the routing headline "
            "use only the solves in the file."]


def check_totals(run: RunData) -> list[str]:
    """summary.json's own arithmetic, and a completed run's last steps row against it."""
    s = run.summary
    if not s:
        return []
    out: list[str] = []
    m, e, q, t = (finite(s.get(k)) for k in ("measured_seconds", "emulation_seconds",
                                             "modeled_quantum_seconds", "total_seconds"))
    if None not in (m, e, q, t) and not _same(t, m - e + q):
        out.append(f"summary.json: total_seconds is {_fmt(t)} but measured − emulation + "
                   f"modeled = {_fmt(m)} − {_fmt(e)} + {_fmt(q)} = {_fmt(m - e + q)}; the file "
                   "was edited or written by another version.")
    total = summary_steps(run)
    if (str(s.get("status")) != "completed" or not run.steps or total is None
            or "steps.jsonl" in run.unreadable_files
            or int(finite(run.steps[-1]["step"])) != total):
        return out
    last = run.steps[-1]
    differ = []
    for key in SHARED_TOTALS:
        a, b = num(last.get(key)), num(s.get(key))
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) \
                and not _same(a, b):
            differ.append(f"{key} {_fmt(a)} vs {_fmt(b)}")
    if differ:
        out.append(f"the last row of steps.jsonl (step {total}) and summary.json disagree: "
                   f"{'; '.join(differ)} (steps.jsonl vs summary.json). The two files come from "
                   "different runs, or one was edited; the summary table shows summary.json.")
    return out


def check_run(run: RunData) -> list[str]:
    """Every consistency check of a run; the warnings found are appended to ``run.warnings``
    and returned (call it once per loaded run)."""
    found = check_steps(run) + check_solves(run) + check_totals(run)
    run.warnings.extend(found)
    return found


def check_comparison_row(row: dict[str, Any], run: RunData, metric: str | None) -> list[str]:
    """A comparison row's figures against its run's summary.json (they are copied from it)."""
    if not run.summary:
        return []
    differ = []
    for row_key, summary_key in ROW_FIGURES:
        key = summary_key or (f"test_{metric}" if metric else None)
        if key is None:
            continue
        a, b = num(row.get(row_key)), num(run.summary.get(key))
        if a is None or b is None or (math.isnan(a) and math.isnan(b)):
            continue
        if not (a == b or _same(a, b)):
            differ.append(f"{row_key} {_fmt(a)} vs {_fmt(b)}")
    if not differ:
        return []
    return [f"comparison.json's row {row.get('label')} disagrees with {row.get('run_dir')}/"
            f"summary.json: {'; '.join(differ)} (row vs run). The run was rerun or resumed after "
            "the comparison was written; the table shows comparison.json, the curves the run's "
            "files."]
