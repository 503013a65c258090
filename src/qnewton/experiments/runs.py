"""What experiments share: reading finished runs into table rows, reusing runs, the table."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from qnewton import calibration
from qnewton.experiments.timing import spread_of
from qnewton.files import read_json, read_jsonl
from qnewton.solvers import MachineRates
from qnewton.training import TrainConfig, train

#: How the label of a row marks a run shared by every hardware profile.
SHARED_MARK = "(shared)"


def _higher_is_better(metric: str) -> bool:
    return metric != "perplexity"


def time_to_target(steps: list[dict[str, Any]], metric: str, target: float | None,
                   clock: str) -> float | None:
    """Cumulative ``clock`` seconds at the first evaluation whose metric reaches ``target``."""
    if target is None:
        return None
    key = f"test_{metric}"
    for row in steps:
        value = row.get(key)
        if value is None:
            continue
        reached = value >= target if _higher_is_better(metric) else value <= target
        if reached:
            return float(row[clock])
    return None


def run_row(label: str, run_dir: Path, base: Path, summary: dict[str, Any],
            target: float | None) -> dict[str, Any]:
    """One comparison/sweep row from a finished run's summary and steps."""
    metric = summary["metric"]
    steps = read_jsonl(run_dir / "steps.jsonl")
    return {
        "label": label,
        "optimizer": summary["optimizer"],
        "hardware": summary["hardware"],
        "final_metric": summary.get(f"test_{metric}"),
        "test_loss": summary.get("test_loss"),
        "measured_seconds": summary["measured_seconds"],
        "modeled_quantum_seconds": summary["modeled_quantum_seconds"],
        "emulation_seconds": summary["emulation_seconds"],
        "total_seconds": summary["total_seconds"],
        "time_to_target_total": time_to_target(steps, metric, target, "total_seconds"),
        "time_to_target_measured": time_to_target(steps, metric, target, "measured_seconds"),
        "quantum_solves": summary["quantum_solves"],
        "classical_solves": summary["classical_solves"],
        "gradient_fallbacks": summary["gradient_fallbacks"],
        "run_dir": str(run_dir.relative_to(base)),
    }


def _setting_changes(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = [k for k in dict.fromkeys([*wanted, *saved]) if saved.get(k) != wanted.get(k)]
    return ", ".join(f"{k} {saved.get(k)!r} there, {wanted.get(k)!r} now" for k in keys)


def run_state(config: TrainConfig, run_dir: Path, out: Path) -> str:
    """What an experiment will do with ``run_dir`` for ``config``, decided before any work:
    ``"new"`` (train), ``"finished"`` (reuse the finished run) or ``"resume"`` (continue the
    interrupted run from its checkpoint).

    Raises ``ValueError`` (naming ``out``) where it could only fail later or overwrite a result:
    ``run_dir`` is a file, holds a run with other settings, or an interrupted run without a
    checkpoint to continue from.
    """
    rel = run_dir.relative_to(out) if run_dir.is_relative_to(out) else run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"out must be a new directory or an earlier result of the same "
                         f"command, got {str(out)!r}, where {rel} is a file")
    if not (run_dir / "config.json").exists():
        return "new"
    saved = read_json(run_dir / "config.json", "the run's config.json")
    saved = saved.get("config") if isinstance(saved, dict) else None
    if isinstance(saved, dict):
        saved = TrainConfig.with_defaults(saved)
    wanted = config.to_dict()
    if saved != wanted:
        changes = (_setting_changes(saved, wanted) if isinstance(saved, dict)
                   else "it is not a qnewton run config")
        raise ValueError(
            f"out must be a new directory or an earlier result with the same settings, got "
            f"{str(out)!r}, whose run {rel} has other settings ({changes}); choose another "
            "output directory, or give the earlier settings to reuse its finished runs")
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = read_json(summary_path, "the run's summary.json")
        if isinstance(summary, dict) and summary.get("status") == "completed":
            return "finished"
    if (run_dir / "checkpoint.pt").exists():
        return "resume"
    raise ValueError(
        f"out must be a new directory or an earlier result with runs that can be reused or "
        f"continued, got {str(out)!r}, whose run {rel} was interrupted before its first "
        "checkpoint; delete that run directory to run it again")


def run_or_reuse(config: TrainConfig, run_dir: Path, progress: bool,
                 state: str | None = None, rates: MachineRates | None = None) -> dict[str, Any]:
    """Train into ``run_dir``, or reuse/resume what is already there for the same config
    (``state`` from :func:`run_state`, computed here if not given). A new run uses ``rates``
    (default: calibrated), a resumed one the rates it started with."""
    if state is None:
        state = run_state(config, run_dir, run_dir.parent)
    if state == "finished":
        return read_json(run_dir / "summary.json", "the run's summary.json")
    if state == "resume":
        return train(config, run_dir, resume=True, progress=progress)
    return train(config, run_dir, progress=progress, rates=rates)


def experiment_rates(states: dict[Path, str]) -> MachineRates | None:
    """One calibration for all new runs of an experiment (``None`` if nothing is to be trained),
    so that every run's time models, and with them the cost policy's routing, are the same
    (a busy machine's calibration is not cached, and would differ from run to run)."""
    if all(state == "finished" for state in states.values()):
        return None
    return calibration.calibrate()


def warm_up(config: TrainConfig, rates: MachineRates | None = None) -> None:
    """Two untimed Newton steps on the same task, so that the first timed run does not pay for
    one-off costs (lazy library initialization, allocator growth) that later runs skip."""
    with tempfile.TemporaryDirectory() as tmp:
        train(dataclasses.replace(config, optimizer="newton", max_steps=2), tmp, progress=False,
              rates=rates)




#: Row fields that are timings: a row of repeated runs holds their median and their spread.
TIMED_FIELDS = ("measured_seconds", "modeled_quantum_seconds", "emulation_seconds",
                "total_seconds", "time_to_target_total", "time_to_target_measured")


def repeated_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for the repeats of a run (rows of :func:`run_row`, the same settings each).

    Its timings (:data:`TIMED_FIELDS`) are the repeats' medians, ``spread[field]`` their
    ``[min, max]`` (``None`` where a repeat has no value, e.g. never reached the target), and
    ``run_dirs`` lists every repeat; the other fields are the first repeat's. ``repeats`` is the
    number of runs.
    """
    row = dict(rows[0])
    row["repeats"] = len(rows)
    row["run_dirs"] = [r["run_dir"] for r in rows]
    spread: dict[str, list[float] | None] = {}
    for key in TIMED_FIELDS:
        s = spread_of([r[key] for r in rows])
        row[key] = None if s is None else s.median
        spread[key] = None if s is None else [s.low, s.high]
    row["spread"] = spread
    finals = {r["final_metric"] for r in rows}
    if len(finals) > 1 and None not in finals:  # training is deterministic: say so if not
        row["final_metric_spread"] = [min(finals), max(finals)]
    return row


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    low_high = (row.get("spread") or {}).get(key) if row.get("repeats", 1) > 1 else None
    if not low_high or low_high[0] == low_high[1]:
        return fmt(value)
    return f"{fmt(value)} ({fmt(low_high[0])}-{fmt(low_high[1])})"


def format_table(rows: list[dict[str, Any]], metric: str, key: str = "label") -> str:
    """A plain-text table of comparison or sweep rows, times labelled measured/modeled/total.

    Rows of repeated runs show the median and, in parentheses, the min-max over the repeats.
    """
    cells = [[str(r[key]), fmt(r["final_metric"]), _cell(r, "measured_seconds"),
              _cell(r, "modeled_quantum_seconds"), _cell(r, "total_seconds"),
              _cell(r, "time_to_target_total"),
              f"{r['quantum_solves']:>5}/{r['classical_solves']:<5}"] for r in rows]
    heads = [key, metric, "measured s", "modeled q s", "total s", "to target s", "q/c solves"]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(heads)]
    widths[0] = max(widths[0], 28)

    def line(parts: list[str]) -> str:
        return " ".join(p.ljust(w) if i == 0 else p.rjust(w)
                        for i, (p, w) in enumerate(zip(parts, widths, strict=True)))

    header = line(heads)
    lines = [header, "-" * len(header), *(line(c) for c in cells)]
    lines.append("measured = wall clock here; modeled q = QLSA cost model on the named profile; "
                 "total = measured - emulation + modeled")
    repeats = max((r.get("repeats", 1) for r in rows), default=1)
    if repeats > 1:
        lines.append(f"times: median (min-max) over {repeats} repeats run in interleaved order")
    if any(r.get("shared_run") for r in rows):
        lines.append(f"{SHARED_MARK}: one run shared by every profile (its optimizer cannot "
                     "route to quantum, so the hardware profile cannot change it)")
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


