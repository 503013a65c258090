"""What experiments share: reading finished runs into table rows, reusing runs, the table."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from qnewton.files import read_json, read_jsonl
from qnewton.training import TrainConfig, train


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


def run_or_reuse(config: TrainConfig, run_dir: Path, progress: bool) -> dict[str, Any]:
    """Train into ``run_dir``, or reuse/resume what is already there for the same config."""
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = read_json(summary_path, "the run's summary.json")
        saved = read_json(run_dir / "config.json", "the run's config.json")["config"]
        if summary.get("status") == "completed" and saved == config.to_dict():
            return summary
    resume = (run_dir / "checkpoint.pt").exists()
    return train(config, run_dir, resume=resume, progress=progress)


def warm_up(config: TrainConfig) -> None:
    """Two untimed Newton steps on the same task, so that the first timed run does not pay for
    one-off costs (lazy library initialization, allocator growth) that later runs skip."""
    with tempfile.TemporaryDirectory() as tmp:
        train(dataclasses.replace(config, optimizer="newton", max_steps=2), tmp, progress=False)




def format_table(rows: list[dict[str, Any]], metric: str, key: str = "label") -> str:
    """A plain-text table of comparison or sweep rows, times labelled measured/modeled/total."""
    header = (f"{key:<28} {metric:>10} {'measured s':>11} {'modeled q s':>12} {'total s':>10} "
              f"{'to target s':>12} {'q/c solves':>11}")
    lines = [header, "-" * len(header)]
    for r in rows:
        tt = r.get("time_to_target_total")
        lines.append(
            f"{str(r[key]):<28} {fmt(r['final_metric']):>10} {fmt(r['measured_seconds']):>11} "
            f"{fmt(r['modeled_quantum_seconds']):>12} {fmt(r['total_seconds']):>10} "
            f"{fmt(tt) if tt is not None else '-':>12} "
            f"{r['quantum_solves']:>5}/{r['classical_solves']:<5}"
        )
    lines.append("measured = wall clock here; modeled q = QLSA cost model on the named profile; "
                 "total = measured - emulation + modeled")
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


