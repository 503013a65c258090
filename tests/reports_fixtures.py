"""Result directories in the formats training / compare / sweep / reproduce write, and helpers
that read values back out of a report page, for the report tests."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The PNGs a run report with solves and evaluations writes, one per registered run plot.
RUN_PNGS = ["loss.png", "metric_time.png", "kappa.png", "sparsity.png", "routing.png",
            "time_breakdown.png"]


# -- fixture builders -------------------------------------------------------------------------
def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def run_config(optimizer: str, hardware: str | None) -> dict:
    return {"config": {"task": "digits", "optimizer": optimizer, "hardware": hardware,
                       "epochs": 2, "batch_size": 128, "lr": None, "seed": 0},
            "task": {"name": "digits", "n_train": 1437}, "rates": {"dense_flops": 6e10},
            "learning_rate": 0.5, "torch_version": "2.13.0"}


def newton_counts(step: int) -> tuple[int, int]:
    """Cumulative (quantum, classical) solves of :func:`newton_solves` after ``step`` steps:
    two blocks per step, 0.weight routed quantum from its third step (0-based step 2) on."""
    quantum = max(0, step - 2)
    return quantum, 2 * step - quantum


def steps_rows(n_steps: int, *, newton: bool, eval_at=(0, 3, 6), metric="accuracy") -> list[dict]:
    rows = []
    for step in range(n_steps + 1):
        measured = 0.5 * step
        emulation = 0.1 * step if newton else 0.0
        modeled = 0.02 * step if newton else 0.0
        quantum, classical = newton_counts(step) if newton else (0, 0)
        row = {"step": step, "epoch": step // 3, "measured_seconds": measured,
               "modeled_quantum_seconds": modeled, "emulation_seconds": emulation,
               "total_seconds": measured - emulation + modeled,
               "quantum_solves": quantum, "classical_solves": classical}
        if step == 0:
            row["initial"] = True
        else:
            row["loss"] = 2.3 / (1 + step)
        if step in eval_at:
            row["test_loss"] = 2.3 / (1 + step) + 0.05
            if metric == "accuracy":
                row["test_accuracy"] = 0.1 + 0.14 * step
            else:
                row["test_perplexity"] = 50.0 / (1 + step)
        rows.append(row)
    return rows


def solve_row(step: int, block: str, choice: str, **kw) -> dict:
    row = {"step": step, "block": block, "n": 640 if block == "0.weight" else 10,
           "d": 64 - 4 * step if block == "0.weight" else 10, "nnz": 4000,
           "kappa": 10.0 ** (4 - 0.5 * step),
           "kappa_log10": 4 - 0.5 * step, "kappa_kind": "upper", "kappa_method": "lanczos-shift",
           "kappa_exact": None, "kappa_ritz": None, "alpha": 1.5, "reg": 1e-2, "shift": 0.0,
           "predicted_quantum_seconds": 1e-3, "predicted_classical_seconds": 2e-3,
           "predicted_classical": {"cholesky": 2e-3, "cg": 5e-3},
           "classical_solver": "cholesky", "policy": "min-time", "choice": choice,
           "solver": "qlsa-emulated" if choice == "quantum" else "cholesky",
           "hardware": "paper", "qlsa": "jennings", "readout": "free", "queries": 5.7e4,
           "measured_classical_seconds": 2e-3 if choice == "classical" else None,
           "modeled_quantum_seconds": 1e-3 if choice == "quantum" else None,
           "emulation_seconds": 0.05 if choice == "quantum" else 0.0, "residual": 1e-6,
           "retries": 0, "fallback": None, "message": ""}
    row.update(kw)
    return row


def newton_solves() -> list[dict]:
    rows = []
    for step in range(6):
        kw_w = {"kappa_exact": 10.0 ** (3.5 - 0.5 * step)} if step % 2 == 0 else {}
        if step == 4:
            kw_w.update(fallback="retry", retries=1)
        rows.append(solve_row(step, "0.weight", "quantum" if step >= 2 else "classical", **kw_w))
        kw_b = {"kappa_kind": "lower", "kappa": 50.0 + step}
        if step == 3:
            kw_b.update(fallback="gradient", kappa="inf", message="ascent direction")
        rows.append(solve_row(step, "2.weight", "classical", **kw_b))
    return rows


def make_newton_run(d: Path, *, with_summary: bool = True) -> Path:
    write_json(d / "config.json", run_config("qnewton", "paper"))
    write_jsonl(d / "steps.jsonl", steps_rows(6, newton=True))
    write_jsonl(d / "solves.jsonl", newton_solves())
    write_jsonl(d / "events.jsonl", [
        {"step": 3, "kind": "fallback", "message": "<script>alert(1)</script> gradient step",
         "block": "2.weight"},
        {"step": 4, "kind": "retry", "message": "residual too large; retried classically"},
    ])
    if with_summary:
        write_json(d / "summary.json", {
            "status": "completed", "task": "digits", "optimizer": "qnewton",
            "hardware": "paper", "steps": 6, "metric": "accuracy", "test_accuracy": 0.94,
            "test_loss": 0.38, "measured_seconds": 3.0,
            "measured_by_phase": {"forward_backward": 0.6, "curvature": 0.9,
                                  "conditioning": 0.2, "estimation": 0.3, "scheduling": 0.05,
                                  "solve": 0.8, "update": 0.1},
            "emulation_seconds": 0.6, "modeled_quantum_seconds": 0.12,
            "modeled_by_profile": {"paper": 0.12}, "total_seconds": 2.52,
            "quantum_solves": 4, "classical_solves": 8, "gradient_fallbacks": 1,
            "newton_solved_blocks": {"0.weight": 6, "2.weight": 5}})
    return d


def make_first_order_run(d: Path) -> Path:
    write_json(d / "config.json", run_config("adam", None))
    write_jsonl(d / "steps.jsonl", steps_rows(6, newton=False))
    (d / "solves.jsonl").write_text("", encoding="utf-8")
    (d / "events.jsonl").write_text("", encoding="utf-8")
    write_json(d / "summary.json", {
        "status": "completed", "task": "digits", "optimizer": "adam", "hardware": None,
        "steps": 6, "metric": "accuracy", "test_accuracy": 0.9, "test_loss": 0.4,
        "measured_seconds": 3.0,
        "measured_by_phase": {"forward_backward": 2.5, "update": 0.4},
        "emulation_seconds": 0.0, "modeled_quantum_seconds": 0.0, "modeled_by_profile": {},
        "total_seconds": 3.0, "quantum_solves": 0, "classical_solves": 0,
        "gradient_fallbacks": 0, "newton_solved_blocks": {}})
    return d


def make_comparison(d: Path) -> Path:
    make_newton_run(d / "runs" / "qnewton@paper")
    make_first_order_run(d / "runs" / "adam")
    write_json(d / "comparison.json", {
        "task": "digits", "metric": "accuracy", "target": 0.8,
        "rows": [
            {"label": "qnewton@paper", "optimizer": "qnewton", "hardware": "paper",
             "final_metric": 0.94, "measured_seconds": 3.0, "modeled_quantum_seconds": 0.12,
             "total_seconds": 2.52, "time_to_target_total": 2.1,
             "time_to_target_measured": 2.5, "quantum_solves": 4, "classical_solves": 8,
             "run_dir": "runs/qnewton@paper"},
            {"label": "adam", "optimizer": "adam", "hardware": None, "final_metric": 0.9,
             "measured_seconds": 3.0, "modeled_quantum_seconds": 0.0, "total_seconds": 3.0,
             "time_to_target_total": None, "time_to_target_measured": None,
             "quantum_solves": 0, "classical_solves": 0, "run_dir": "runs/adam"},
            {"label": "newton", "optimizer": "newton", "hardware": None, "final_metric": "nan",
             "measured_seconds": 9.0, "modeled_quantum_seconds": 0.0, "total_seconds": 9.0,
             "time_to_target_total": None, "time_to_target_measured": None,
             "quantum_solves": 0, "classical_solves": 10, "run_dir": "runs/missing"},
        ]})
    return d



# -- sweep -------------------------------------------------------------------------------------
GATE_TIMES = [1e-9, 1e-8, 1e-7, 1e-6, 1e-5]
BASELINE_TOTAL = 300.0
CROSSOVER = 3e-7  # total = 1e9 * gate_time crosses 300 s at 3e-7 s


def make_gate_sweep(d: Path, baseline: float | None = BASELINE_TOTAL) -> Path:
    rows = []
    for i, g in enumerate(GATE_TIMES):
        total = 1e9 * g
        rows.append({"value": g, "final_metric": 0.93, "measured_seconds": 5.0,
                     "modeled_quantum_seconds": 0.9 * total, "total_seconds": total,
                     "quantum_solves": 10 - 2 * i, "classical_solves": 2 * i,
                     "run_dir": f"runs/gate-{g:g}"})
    write_json(d / "sweep.json", {
        "task": "digits", "param": "gate-time", "optimizer": "qnewton", "metric": "accuracy",
        "values": GATE_TIMES, "rows": rows,
        "baseline": None if baseline is None else {"label": "newton",
                                                   "total_seconds": baseline,
                                                   "final_metric": 0.94}})
    return d




# -- reading a report back --------------------------------------------------------------------
def read_html(path: Path) -> str:
    assert path.name == "report.html" and path.is_file()
    return path.read_text(encoding="utf-8")


def assert_png(path: Path) -> None:
    assert path.is_file(), f"missing {path.name}"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert len(data) > 5000, f"{path.name} is suspiciously small ({len(data)} bytes)"


def assert_self_contained(text: str) -> None:
    """Images embedded, no external resources, no script."""
    assert "data:image/png;base64," in text
    assert 'src="http' not in text and "src='http" not in text
    assert "<link" not in text and "<script" not in text.lower().replace("&lt;script", "")


def kv_value(text: str, label: str) -> str:
    """The value cell of the labelled row of a two-column (summary) table."""
    found = re.findall(rf"<tr><th>{re.escape(html.escape(label, quote=True))}</th>"
                       r"<td>([^<]*)</td></tr>", text)
    assert len(found) == 1, f"expected one row labelled {label!r}, found {len(found)}"
    return html.unescape(found[0])


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every data table on the page, as cell texts (tags stripped)."""
    rows = re.findall(r"<tr>(<td>.*?)</tr>", text)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td>(.*?)</td>", r)]
            for r in rows]


def row_starting(text: str, first_cell: str) -> list[str]:
    """The one table row whose first cell is ``first_cell``."""
    rows = [r for r in table_rows(text) if r and r[0] == first_cell]
    assert len(rows) == 1, f"expected one row starting {first_cell!r}, found {len(rows)}"
    return rows[0]


def notes(text: str) -> list[str]:
    """The texts of the page's notes (things skipped or not recorded)."""
    return [html.unescape(n) for n in re.findall(r"<p class='note'>(.*?)</p>", text)]


def warnings(text: str) -> list[str]:
    """The page's integrity warnings (listed at its top)."""
    return [html.unescape(w) for w in re.findall(r"<li class='warning'>(.*?)</li>", text)]


def headline(text: str) -> list[str]:
    """The sentences of the page's headline."""
    [block] = re.findall(r"<div class='headline'>(.*?)</div>", text)
    return [html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", block)]


# -- damaging a result directory ---------------------------------------------------------------
def keep_lines(path: Path, n: int) -> None:
    """Cut a JSON-lines file to its first ``n`` lines (as a truncated copy would be)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("".join(line + "\n" for line in lines[:n]), encoding="utf-8")


def drop_lines(path: Path, numbers) -> None:
    """Remove the given 1-based lines from a JSON-lines file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("".join(line + "\n" for i, line in enumerate(lines, 1)
                            if i not in set(numbers)), encoding="utf-8")


def update_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


# -- a run of realistic length, with chosen routing ratios ------------------------------------
LONG_BLOCKS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
#: modeled quantum / predicted classical seconds of each block (every step)
LONG_RATIOS = (2.0, 10.0, 100.0, 1000.0, 1e4, 1e5)
LONG_PHASES = {"forward_backward": 2.0, "curvature": 3.0, "conditioning": 0.5, "estimation": 4.0,
               "scheduling": 0.3, "solve": 1.0, "update": 0.2}


def long_solves(n_steps: int, policy: str = "cost", ratios=LONG_RATIOS) -> list[dict]:
    rows = []
    for step in range(n_steps):
        for block, ratio in zip(LONG_BLOCKS, ratios, strict=True):
            rows.append(solve_row(step, block, "classical", policy=policy, kappa=1e3,
                                  kappa_log10=3.0, predicted_classical_seconds=1e-4,
                                  predicted_quantum_seconds=ratio * 1e-4))
    return rows


def make_long_run(d: Path, n_steps: int = 120, policy: str = "cost") -> Path:
    """A completed qnewton run of ``n_steps`` steps, six blocks each routed classically, whose
    files agree with each other (one row per step, one solve per block and step)."""
    measured = sum(LONG_PHASES.values())
    write_json(d / "config.json", run_config("qnewton", "paper"))
    rows = []
    for step in range(n_steps + 1):
        t = measured * step / n_steps
        row = {"step": step, "epoch": step // 12, "measured_seconds": t,
               "modeled_quantum_seconds": 0, "emulation_seconds": 0.0, "total_seconds": t,
               "quantum_solves": 0, "classical_solves": 6 * step}
        if step == 0:
            row["initial"] = True
        else:
            row["loss"] = 2.3 / (1 + 0.1 * step)
        if step % 12 == 0 or step == n_steps:
            row.update(test_loss=2.3 / (1 + 0.1 * step), test_accuracy=0.1 + 0.007 * step)
        rows.append(row)
    write_jsonl(d / "steps.jsonl", rows)
    write_jsonl(d / "solves.jsonl", long_solves(n_steps, policy))
    (d / "events.jsonl").write_text("", encoding="utf-8")
    write_json(d / "summary.json", {
        "status": "completed", "task": "digits", "optimizer": "qnewton", "hardware": "paper",
        "steps": n_steps, "metric": "accuracy", "test_accuracy": rows[-1]["test_accuracy"],
        "test_loss": rows[-1]["test_loss"], "measured_seconds": measured,
        "measured_by_phase": dict(LONG_PHASES), "emulation_seconds": 0.0,
        "modeled_quantum_seconds": 0, "modeled_by_profile": {}, "total_seconds": measured,
        "quantum_solves": 0, "classical_solves": 6 * n_steps, "gradient_fallbacks": 0})
    return d
