"""Tests for qnewton.reports: fixture directories in the formats training/compare/sweep write."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from qnewton.reports import EXPECTED_FILES, detect_kind, find_crossovers, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_PNGS = ["loss.png", "metric_time.png", "kappa.png", "sparsity.png", "routing.png",
            "time_breakdown.png"]


# -- fixture builders -------------------------------------------------------------------------
def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _config(optimizer: str, hardware: str | None) -> dict:
    return {"config": {"task": "digits", "optimizer": optimizer, "hardware": hardware,
                       "epochs": 2, "batch_size": 128, "lr": None, "seed": 0},
            "task": {"name": "digits", "n_train": 1437}, "rates": {"dense_flops": 6e10},
            "learning_rate": 0.5, "torch_version": "2.13.0"}


def _steps(n_steps: int, *, newton: bool, eval_at=(0, 3, 6), metric="accuracy") -> list[dict]:
    rows = []
    for step in range(n_steps + 1):
        measured = 0.5 * step
        emulation = 0.1 * step if newton else 0.0
        modeled = 0.02 * step if newton else 0.0
        row = {"step": step, "epoch": step // 3, "measured_seconds": measured,
               "modeled_quantum_seconds": modeled, "emulation_seconds": emulation,
               "total_seconds": measured - emulation + modeled,
               "quantum_solves": step if newton else 0,
               "classical_solves": step if newton else 0}
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


def _solve(step: int, block: str, choice: str, **kw) -> dict:
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


def _newton_solves() -> list[dict]:
    rows = []
    for step in range(6):
        kw_w = {"kappa_exact": 10.0 ** (3.5 - 0.5 * step)} if step % 2 == 0 else {}
        if step == 4:
            kw_w.update(fallback="retry", retries=1)
        rows.append(_solve(step, "0.weight", "quantum" if step >= 2 else "classical", **kw_w))
        kw_b = {"kappa_kind": "lower", "kappa": 50.0 + step}
        if step == 3:
            kw_b.update(fallback="gradient", kappa="inf", message="ascent direction")
        rows.append(_solve(step, "2.weight", "classical", **kw_b))
    return rows


def make_newton_run(d: Path, *, with_summary: bool = True) -> Path:
    _write_json(d / "config.json", _config("qnewton", "paper"))
    _write_jsonl(d / "steps.jsonl", _steps(6, newton=True))
    _write_jsonl(d / "solves.jsonl", _newton_solves())
    _write_jsonl(d / "events.jsonl", [
        {"step": 3, "kind": "fallback", "message": "<script>alert(1)</script> gradient step",
         "block": "2.weight"},
        {"step": 4, "kind": "retry", "message": "residual too large; retried classically"},
    ])
    if with_summary:
        _write_json(d / "summary.json", {
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
    _write_json(d / "config.json", _config("adam", None))
    _write_jsonl(d / "steps.jsonl", _steps(6, newton=False))
    (d / "solves.jsonl").write_text("", encoding="utf-8")
    (d / "events.jsonl").write_text("", encoding="utf-8")
    _write_json(d / "summary.json", {
        "status": "completed", "task": "digits", "optimizer": "adam", "hardware": None,
        "steps": 6, "metric": "accuracy", "test_accuracy": 0.9, "test_loss": 0.4,
        "measured_seconds": 3.0,
        "measured_by_phase": {"forward_backward": 2.5, "update": 0.4},
        "emulation_seconds": 0.0, "modeled_quantum_seconds": 0.0, "modeled_by_profile": {},
        "total_seconds": 3.0, "quantum_solves": 0, "classical_solves": 0,
        "gradient_fallbacks": 0, "newton_solved_blocks": {}})
    return d


def _read_html(path: Path) -> str:
    assert path.name == "report.html" and path.is_file()
    return path.read_text(encoding="utf-8")


def _assert_png(path: Path) -> None:
    assert path.is_file(), f"missing {path.name}"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert len(data) > 5000, f"{path.name} is suspiciously small ({len(data)} bytes)"


def _assert_self_contained(text: str) -> None:
    assert "data:image/png;base64," in text
    assert 'src="http' not in text and "src='http" not in text
    assert "<link" not in text and "<script" not in text.lower().replace("&lt;script", "")
    assert "measured" in text and "modeled" in text and "total" in text


# -- run reports ------------------------------------------------------------------------------
def test_newton_run_report(tmp_path):
    d = make_newton_run(tmp_path / "run")
    assert detect_kind(d) == "run"
    out = write_report(d)
    assert out == d / "report.html"
    text = _read_html(out)
    _assert_self_contained(text)
    for name in RUN_PNGS:
        _assert_png(d / name)
    # one embedded image per PNG written
    assert text.count("data:image/png;base64,") == len(RUN_PNGS)
    # summary values and labels
    assert "modeled quantum seconds (profile paper)" in text
    assert "total (= measured − emulation + modeled) seconds (profile paper)" in text
    assert "2.52 s" in text and "0.94" in text
    # the inf κ is parsed, not plotted, and reported
    assert "1 κ estimate(s) not finite" in text
    # routing caption counts quantum vs classical and the fallbacks
    assert "4 quantum, 8 classical" in text
    assert "1 retry, 1 gradient" in text
    # events are escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert" not in text
    assert "No exact κ recorded" not in text


def test_first_order_run_has_no_solve_plots(tmp_path):
    d = make_first_order_run(tmp_path / "adam")
    text = _read_html(write_report(d))
    _assert_self_contained(text)
    for name in ("loss.png", "metric_time.png", "time_breakdown.png"):
        _assert_png(d / name)
    for name in ("kappa.png", "sparsity.png", "routing.png"):
        assert not (d / name).exists()
    assert "No Hessian solves recorded" in text
    assert "No events recorded" in text


def test_killed_run_uses_last_steps_row(tmp_path):
    d = make_newton_run(tmp_path / "killed", with_summary=False)
    # a torn last line, as left by a killed process
    with (d / "steps.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"step": 7, "epoch": 2, "loss": 0.2, "meas')
    text = _read_html(write_report(d))
    _assert_self_contained(text)
    assert "summary.json is missing" in text
    assert "1 unreadable line(s) skipped" in text
    # last complete row: step 6, measured 3 s, emulation 0.6, modeled 0.12 -> total 2.52
    assert "3 s" in text and "2.52 s" in text
    assert "evaluated at step 6" in text
    assert "No per-phase times" in text
    for name in RUN_PNGS:
        _assert_png(d / name)


def test_missing_optional_data_is_reported_not_crashed(tmp_path):
    d = tmp_path / "sparse"
    _write_json(d / "config.json", _config("newton", "surface-code"))
    _write_jsonl(d / "steps.jsonl", _steps(4, newton=True, eval_at=()))
    solves = [_solve(s, "0.weight", "classical") for s in range(4)]
    for s in solves:
        del s["kappa_exact"]
    _write_jsonl(d / "solves.jsonl", solves)
    # no events.jsonl, no summary.json
    text = _read_html(write_report(d))
    assert "No exact κ recorded" in text
    assert "Metric-vs-time plot skipped" in text
    assert "No test evaluation rows" in text
    assert not (d / "metric_time.png").exists()
    for name in ("loss.png", "kappa.png", "sparsity.png", "routing.png", "time_breakdown.png"):
        _assert_png(d / name)
    assert "surface-code" in text


def test_perplexity_run(tmp_path):
    d = tmp_path / "lm"
    _write_json(d / "config.json", _config("qnewton", "paper"))
    _write_jsonl(d / "steps.jsonl", _steps(6, newton=True, metric="perplexity"))
    _write_jsonl(d / "solves.jsonl", _newton_solves())
    text = _read_html(write_report(d))
    assert "final test perplexity" in text
    _assert_png(d / "metric_time.png")


# -- bad directories --------------------------------------------------------------------------
def test_empty_directory_raises_naming_expected_files(tmp_path):
    with pytest.raises(ValueError) as exc:
        write_report(tmp_path)
    msg = str(exc.value)
    for names in EXPECTED_FILES.values():
        for name in names:
            assert name in msg
    assert not (tmp_path / "report.html").exists()


def test_unknown_directory_and_missing_path_raise(tmp_path):
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")  # no steps.jsonl
    with pytest.raises(ValueError, match="steps.jsonl"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match="sweep.json"):
        write_report(tmp_path / "does-not-exist")


# -- comparison -------------------------------------------------------------------------------
def make_comparison(d: Path) -> Path:
    make_newton_run(d / "runs" / "qnewton@paper")
    make_first_order_run(d / "runs" / "adam")
    _write_json(d / "comparison.json", {
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


def test_comparison_report(tmp_path):
    d = make_comparison(tmp_path / "cmp")
    assert detect_kind(d) == "comparison"
    text = _read_html(write_report(d))
    _assert_self_contained(text)
    for name in ("comparison_metric_step.png", "comparison_metric_time.png",
                 "comparison_times.png"):
        _assert_png(d / name)
    # per-run plots written into the comparison dir with prefixed names
    for name in RUN_PNGS:
        _assert_png(d / f"run_qnewton-paper_{name}")
    _assert_png(d / "run_adam_loss.png")
    assert not (d / "run_adam_kappa.png").exists()
    # nothing written into the run directories themselves
    assert not (d / "runs" / "adam" / "report.html").exists()
    assert not (d / "runs" / "adam" / "loss.png").exists()
    assert "run directory runs/missing of newton not found" in text
    assert "time to target (total)" in text and "time to target (measured)" in text
    assert "qnewton@paper" in text and "nan" in text


# -- sweep ------------------------------------------------------------------------------------
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
    _write_json(d / "sweep.json", {
        "task": "digits", "param": "gate-time", "optimizer": "qnewton", "metric": "accuracy",
        "values": GATE_TIMES, "rows": rows,
        "baseline": None if baseline is None else {"label": "newton",
                                                   "total_seconds": baseline,
                                                   "final_metric": 0.94}})
    return d


def test_gate_time_sweep_report_and_crossover(tmp_path):
    d = make_gate_sweep(tmp_path / "sweep")
    assert detect_kind(d) == "sweep"
    text = _read_html(write_report(d))
    _assert_self_contained(text)
    for name in ("sweep_metric.png", "sweep_times.png", "sweep_crossover.png",
                 "sweep_quantum_share.png"):
        _assert_png(d / name)
    found = re.findall(r"class='crossover'>([^<]+)<", text)
    assert len(found) == 1
    assert math.isclose(float(found[0]), CROSSOVER, rel_tol=1e-3)
    assert "below this value" in text
    assert "100.0%" in text and "20.0%" in text  # quantum share column


def test_gate_time_sweep_without_crossover_or_baseline(tmp_path):
    d = make_gate_sweep(tmp_path / "low", baseline=1e-3)
    text = _read_html(write_report(d))
    assert "No crossover in the swept range" in text
    assert "class='crossover'" not in text
    _assert_png(d / "sweep_crossover.png")
    d2 = make_gate_sweep(tmp_path / "nobase", baseline=None)
    text2 = _read_html(write_report(d2))
    assert "No classical baseline" in text2
    assert not (d2 / "sweep_crossover.png").exists()


def test_reg_sweep_report(tmp_path):
    d = tmp_path / "reg"
    rows = [{"value": v, "final_metric": 0.9 - 0.01 * i, "measured_seconds": 4.0 + i,
             "modeled_quantum_seconds": 0.1, "total_seconds": 3.5 + i, "quantum_solves": 0,
             "classical_solves": 0, "run_dir": None}
            for i, v in enumerate([1e-3, 1e-1, 1e1, 1e3])]
    _write_json(d / "sweep.json", {"task": "digits", "param": "reg", "optimizer": "qnewton",
                                   "metric": "accuracy", "values": [r["value"] for r in rows],
                                   "rows": rows, "baseline": None})
    text = _read_html(write_report(d))
    _assert_png(d / "sweep_metric.png")
    _assert_png(d / "sweep_times.png")
    assert not (d / "sweep_crossover.png").exists()
    assert "Quantum-share plot skipped" in text


def test_find_crossovers_interpolates_in_log_space():
    assert find_crossovers(GATE_TIMES, [1e9 * g for g in GATE_TIMES], 300.0) == pytest.approx(
        [3e-7], rel=1e-9)
    assert find_crossovers([1.0, 2.0, 3.0], [5.0, 1.0, 5.0], 3.0) == pytest.approx(
        [math.exp(math.log(2) * math.log(5 / 3) / math.log(5)),
         math.exp(math.log(2) + math.log(3) / math.log(5) * math.log(3 / 2))], rel=1e-9)
    assert find_crossovers([1.0, 2.0], [5.0, 6.0], 3.0) == []
    assert find_crossovers([1.0, 2.0, 3.0], [5.0, 3.0, 1.0], 3.0) == [2.0]


# -- reproduce --------------------------------------------------------------------------------
def test_reproduce_report(tmp_path):
    d = tmp_path / "repro"
    make_comparison(d / "compare-paper")
    make_gate_sweep(d / "sweep-gate")
    _write_json(d / "claims.json", {
        "claims": [
            {"claim": "up to 90% less training time", "paper": "90%", "profile": "paper",
             "ours": "16% less total time", "verdict": "partly", "details": "at 1 as gates"},
            {"claim": "kappa > 1e4 routed classically", "paper": "yes", "profile": "paper",
             "ours": "yes", "verdict": "supported", "details": ""},
            {"claim": "advantage on realistic hardware", "paper": "implied",
             "profile": "surface-code", "ours": "classical wins", "verdict": "not supported",
             "details": "readout dominates"},
        ],
        "comparisons": ["compare-paper"], "sweeps": ["sweep-gate", "sweep-missing"]})
    assert detect_kind(d) == "reproduce"
    text = _read_html(write_report(d))
    _assert_self_contained(text)
    assert "up to 90% less training time" in text
    assert "class='not-supported'>not supported<" in text
    assert "class='supported'>supported<" in text
    assert "sweep-missing: no sweep.json there" in text
    _assert_png(d / "compare-paper_comparison_metric_time.png")
    _assert_png(d / "compare-paper_comparison_times.png")
    _assert_png(d / "sweep-gate_sweep_crossover.png")
    found = re.findall(r"class='crossover'>([^<]+)<", text)
    assert [float(f) for f in found] == pytest.approx([CROSSOVER], rel=1e-3)
    # sub-directories are read, not written to
    assert not (d / "compare-paper" / "report.html").exists()
    assert not (d / "sweep-gate" / "report.html").exists()


def test_run_with_empty_steps_and_garbage_rows(tmp_path):
    d = tmp_path / "fresh"
    _write_json(d / "config.json", _config("qnewton", "paper"))
    (d / "steps.jsonl").write_text('\n{"epoch": 0}\n[1, 2]\n', encoding="utf-8")
    _write_jsonl(d / "solves.jsonl", [{"block": "0.weight", "choice": "quantum"}])
    text = _read_html(write_report(d))
    assert "steps.jsonl has no rows yet" in text
    assert "1 unreadable line(s) skipped" in text
    assert "Loss/metric plot skipped" in text
    assert "Time breakdown skipped" in text
    assert "κ plot skipped" in text and "Routing plot skipped" in text


def test_comparison_and_sweep_without_rows(tmp_path):
    c = tmp_path / "c"
    _write_json(c / "comparison.json", {"task": "digits", "metric": "accuracy", "target": None,
                                        "rows": []})
    text = _read_html(write_report(c))
    assert "Metric curves skipped" in text
    s = tmp_path / "s"
    _write_json(s / "sweep.json", {"task": "digits", "param": "gate-time", "optimizer": "qnewton",
                                   "metric": "accuracy", "values": [], "rows": [],
                                   "baseline": None})
    text = _read_html(write_report(s))
    assert "nothing to plot" in text
    assert not list(s.glob("*.png"))
