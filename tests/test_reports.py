"""Reports of comparison, sweep and reproduction directories, and choosing the kind of report."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from reports_fixtures import (
    CROSSOVER,
    GATE_TIMES,
    RUN_PNGS,
    assert_png,
    assert_self_contained,
    kv_value,
    make_comparison,
    make_gate_sweep,
    make_newton_run,
    notes,
    read_html,
    row_starting,
    steps_rows,
    warnings,
    write_json,
    write_jsonl,
)

import qnewton.reports as reports
from qnewton.registry import Registry
from qnewton.reports import EXPECTED_FILES, REPORT_KINDS, detect_kind, make_report, write_report
from qnewton.reports.comparison import off_scale, short_label


# -- kinds of directory -----------------------------------------------------------------------
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


def test_report_kinds_registry_drives_detection_and_building(tmp_path, monkeypatch):
    assert {name: kind.expected_files for name, kind in REPORT_KINDS.items()} == EXPECTED_FILES
    kinds: Registry[reports.ReportKind] = Registry("report kind")
    kinds.register("notebook", reports.ReportKind(
        ("notebook.json",), lambda d: reports.ReportPage("notebook report", f"<p>{d.name}</p>")))
    for name, kind in REPORT_KINDS.items():
        kinds.register(name, kind)
    monkeypatch.setattr(reports, "REPORT_KINDS", kinds)
    d = make_newton_run(tmp_path / "nb")
    write_json(d / "notebook.json", {})
    assert detect_kind(d) == "notebook"  # registered first, so it wins over "run"
    assert "<p>nb</p>" in read_html(write_report(d))
    with pytest.raises(ValueError, match=r"notebook.json \(notebook\)"):
        detect_kind(tmp_path / "missing")


# -- comparison -------------------------------------------------------------------------------
def test_comparison_report(tmp_path):
    d = make_comparison(tmp_path / "cmp")
    assert detect_kind(d) == "comparison"
    written = make_report(d)
    text = read_html(written.path)
    assert_self_contained(text)
    for name in ("comparison_metric_step.png", "comparison_metric_time.png",
                 "comparison_times.png"):
        assert_png(d / name)
    # each run's own report is written into its run directory and linked, not embedded
    for run_dir, pngs in (("runs/qnewton@paper", RUN_PNGS),
                          ("runs/adam", ["loss.png", "metric_time.png", "time_breakdown.png"])):
        run_page = read_html(d / run_dir / "report.html")
        assert_self_contained(run_page)
        for name in pngs:
            assert_png(d / run_dir / name)
        assert f"href='{quote(run_dir)}/report.html'" in text
    assert not (d / "runs" / "adam" / "kappa.png").exists()
    assert not list(d.glob("run_*.png"))  # no copies of the run plots in the comparison dir
    assert text.count("data:image/png;base64,") == 3
    # the missing run is an integrity warning, on the page and returned for the CLI
    missing = ("run directory runs/missing of newton not found or has no steps.jsonl: its "
               "curves are skipped.")
    assert warnings(text) == [missing] and written.warnings == (missing,)
    assert kv_value(text, "target") == "0.8"
    # rows: run, optimizer, hardware, final metric, measured, modeled, total, time to target
    # (total), time to target (measured), quantum solves, classical solves
    assert row_starting(text, "qnewton@paper") == [
        "qnewton@paper", "qnewton", "paper", "0.94", "3 s", "0.12 s", "2.52 s", "2.1 s", "2.5 s",
        "4", "8"]
    assert row_starting(text, "newton") == [
        "newton", "newton", "—", "nan", "9 s", "0 s", "9 s", "—", "—", "0", "10"]


def test_comparison_with_a_corrupt_run_file_still_reports(tmp_path):
    d = make_comparison(tmp_path / "cmp")
    run_dir = d / "runs" / "qnewton@paper"
    lines = (run_dir / "solves.jsonl").read_text(encoding="utf-8").splitlines()
    lines[0] = "{oops"
    (run_dir / "solves.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = read_html(write_report(d))
    [problem] = [w for w in warnings(text) if "solves.jsonl" in w]
    assert problem.startswith("runs/qnewton@paper: ")
    assert str(run_dir / "solves.jsonl") in problem and "line 1 is not valid JSON" in problem
    assert not (run_dir / "kappa.png").exists()
    assert_png(run_dir / "loss.png")
    assert "(1 warning)" in text  # next to the link to that run's report


def test_comparison_row_that_disagrees_with_its_run_is_a_warning(tmp_path):
    d = make_comparison(tmp_path / "cmp")
    data = json.loads((d / "comparison.json").read_text(encoding="utf-8"))
    data["rows"][0]["total_seconds"] = 9.99  # the run's summary says 2.52
    data["rows"][0]["quantum_solves"] = 7  # and 4
    write_json(d / "comparison.json", data)
    assert make_report(d).warnings[1:] == (
        "comparison.json's row qnewton@paper disagrees with runs/qnewton@paper/summary.json: "
        "total_seconds 9.99 vs 2.52; quantum_solves 7 vs 4 (row vs run). The run was rerun or "
        "resumed after the comparison was written; the table shows comparison.json, the curves "
        "the run's files.",)


def _cmp_run(d: Path, label: str, total_scale: float, evals) -> dict:
    """A run directory whose times are the fixture's times × ``total_scale``."""
    run = make_newton_run(d / "runs" / label)
    rows = steps_rows(6, newton=True, eval_at=evals)
    for r in rows:
        for key in ("measured_seconds", "emulation_seconds", "modeled_quantum_seconds",
                    "total_seconds"):
            r[key] *= total_scale
    write_jsonl(run / "steps.jsonl", rows)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    for key in ("measured_seconds", "emulation_seconds", "modeled_quantum_seconds",
                "total_seconds"):
        summary[key] *= total_scale
    summary["modeled_by_profile"] = {"paper": summary["modeled_quantum_seconds"]}
    write_json(run / "summary.json", summary)
    return {"label": label, "optimizer": "qnewton", "hardware": "paper",
            "final_metric": summary["test_accuracy"], "run_dir": f"runs/{label}",
            **{k: summary[k] for k in ("measured_seconds", "modeled_quantum_seconds",
                                        "total_seconds", "quantum_solves",
                                        "classical_solves")}}


def test_comparison_plots_say_what_they_cannot_show(tmp_path):
    """Few evaluations add the per-step training loss; identical curves are named; a run whose
    time is many decades beyond the others is put off scale, not allowed to crush them."""
    d = tmp_path / "cmp"
    rows = [_cmp_run(d, "fast", 1.0, (0, 3, 6)), _cmp_run(d, "twin", 1.0, (0, 3, 6)),
            _cmp_run(d, "slow", 1e9, (0, 6))]
    write_json(d / "comparison.json", {"task": "digits", "metric": "accuracy", "target": None,
                                       "rows": rows})
    written = make_report(d)
    assert written.warnings == ()
    text = read_html(written.path)
    assert ("slow: fewer than 3 test evaluations (the test set is evaluated at epoch ends "
            "unless --eval-every is given), so the test-accuracy points are not a curve; the "
            "training loss of every step is drawn against both clocks as well.") in notes(text)
    assert ("fast, twin have identical test-accuracy curves: their lines lie on top of each "
            "other (told apart by dash and marker).") in notes(text)
    [caption] = re.findall(r"comparison_metric_time\.png: ([^<]*)", text)
    assert "test accuracy (top) and training loss (bottom)" in caption
    # slow ends at 2.52e9 total seconds, fast at 2.52: nine decades apart
    assert "Off scale, so that the other runs stay readable" in caption
    assert "total seconds: slow (to 2.5e+09 s)" in caption
    assert "measured seconds: slow (to 3e+09 s)" in caption
    # fast and twin took the same time: a linear time axis, the points at 0 s kept
    assert "Log time axis" not in caption


def test_comparison_time_axis_is_log_only_for_runs_of_very_different_lengths(tmp_path):
    d = tmp_path / "cmp"
    # total seconds at the evaluations (steps 0, 3, 6): fast 0, 1.26, 2.52; long 100 × those.
    # Drawn times span 1.26 … 252 s (2.3 decades), durations differ 100×: a log axis.
    rows = [_cmp_run(d, "fast", 1.0, (0, 3, 6)), _cmp_run(d, "long", 100.0, (0, 3, 6))]
    write_json(d / "comparison.json", {"task": "digits", "metric": "accuracy", "target": None,
                                       "rows": rows})
    text = read_html(make_report(d).path)
    [caption] = re.findall(r"comparison_metric_time\.png: ([^<]*)", text)
    assert caption.endswith("Log time axis: the points at 0 s (before training) are not shown.")
    assert "Off scale" not in caption  # 2 decades is no reason to cut a run
    # 30× longer: drawn times span 1.26 … 75.6 s (1.8 decades), so the axis stays linear
    write_json(d / "comparison.json", {"task": "digits", "metric": "accuracy", "target": None,
                                       "rows": [rows[0], _cmp_run(d, "long", 30.0, (0, 3, 6))]})
    text = read_html(make_report(d).path)
    [caption] = re.findall(r"comparison_metric_time\.png: ([^<]*)", text)
    assert "Log time axis" not in caption


def test_off_scale_and_short_labels():
    assert off_scale({"a": 1.0, "b": 2.0, "c": 5e6}) == {"c"}
    assert off_scale({"a": 1.0, "b": 2.0, "c": 500.0}) == set()  # < 3 decades apart
    assert off_scale({"a": 1.0, "b": 5e6, "c": 6e6}) == set()  # never the majority
    assert off_scale({"a": 0.0, "b": 1.0}) == set()
    assert short_label("qnewton@paper") == "qnewton@paper"
    wrapped = short_label("newton-inverse@surface-code-fast-gates")
    assert all(len(line) <= 22 for line in wrapped.splitlines()) and "\n" in wrapped
    assert wrapped.replace("\n", "") == "newton-inverse@surface-code-fast-gates"


def test_corrupt_comparison_json_raises_naming_it(tmp_path):
    d = tmp_path / "cmp"
    d.mkdir()
    (d / "comparison.json").write_text('{"rows": [', encoding="utf-8")
    with pytest.raises(ValueError, match=r"comparison\.json is not valid JSON"):
        write_report(d)
    assert not (d / "report.html").exists()


# -- sweep ------------------------------------------------------------------------------------
def test_gate_time_sweep_report_and_crossover(tmp_path):
    d = make_gate_sweep(tmp_path / "sweep")
    assert detect_kind(d) == "sweep"
    text = read_html(write_report(d))
    assert_self_contained(text)
    for name in ("sweep_metric.png", "sweep_times.png", "sweep_crossover.png",
                 "sweep_quantum_share.png"):
        assert_png(d / name)
    # total = 1e9 * gate time meets the 300 s baseline at 3e-7 s
    found = re.findall(r"class='crossover'>([^<]+)<", text)
    assert len(found) == 1
    assert math.isclose(float(found[0]), CROSSOVER, rel_tol=1e-3)
    assert "below this value" in text  # totals grow with the gate time
    # quantum share: 10 of 10 solves at the fastest gates, 2 of 10 at the slowest
    assert row_starting(text, "1e-09")[7] == "100.0%"
    assert row_starting(text, "1e-05")[7] == "20.0%"
    assert kv_value(text, "classical baseline") == ("newton: total 300 s, final metric 0.94")


def test_gate_time_sweep_without_crossover_or_baseline(tmp_path):
    slowest = 1e9 * GATE_TIMES[0]  # 1 s: every total is at least this
    d = make_gate_sweep(tmp_path / "above", baseline=0.5 * slowest)
    text = read_html(write_report(d))
    assert any(n.startswith("No crossover in the swept range: total seconds stay above the "
                            "baseline (0.5 s)") for n in notes(text))
    assert "class='crossover'" not in text
    assert_png(d / "sweep_crossover.png")
    d = make_gate_sweep(tmp_path / "below", baseline=1e6)
    text = read_html(write_report(d))
    assert any(n.startswith("No crossover in the swept range: total seconds are below the "
                            "baseline (1e+06 s)") for n in notes(text))
    d = make_gate_sweep(tmp_path / "nobase", baseline=None)
    text = read_html(write_report(d))
    assert "No classical baseline in sweep.json: crossover not computed." in notes(text)
    assert not (d / "sweep_crossover.png").exists()


def test_reg_sweep_report(tmp_path):
    d = tmp_path / "reg"
    rows = [{"value": v, "final_metric": 0.9 - 0.01 * i, "measured_seconds": 4.0 + i,
             "modeled_quantum_seconds": 0.1, "total_seconds": 3.5 + i, "quantum_solves": 0,
             "classical_solves": 0, "run_dir": None}
            for i, v in enumerate([1e-3, 1e-1, 1e1, 1e3])]
    write_json(d / "sweep.json", {"task": "digits", "param": "reg", "optimizer": "qnewton",
                                  "metric": "accuracy", "values": [r["value"] for r in rows],
                                  "rows": rows, "baseline": None})
    text = read_html(write_report(d))
    assert_png(d / "sweep_metric.png")
    assert_png(d / "sweep_times.png")
    assert not (d / "sweep_crossover.png").exists()  # only a gate-time sweep has one
    assert "<h2>Crossover</h2>" not in text
    assert row_starting(text, "10") == ["10", "0.88", "6 s", "0.1 s", "5.5 s", "0", "0", "—", "—"]
    assert ("Quantum-share plot skipped: no row has any solves recorded."
            in notes(text))


def test_comparison_and_sweep_without_rows(tmp_path):
    c = tmp_path / "c"
    write_json(c / "comparison.json", {"task": "digits", "metric": "accuracy", "target": None,
                                       "rows": []})
    text = read_html(write_report(c))
    assert "Curves skipped: no run directory with steps to draw." in notes(text)
    assert "<h2>Each run</h2>" not in text
    s = tmp_path / "s"
    write_json(s / "sweep.json", {"task": "digits", "param": "gate-time", "optimizer": "qnewton",
                                  "metric": "accuracy", "values": [], "rows": [],
                                  "baseline": None})
    text = read_html(write_report(s))
    assert "sweep.json has no rows with a numeric value: nothing to plot." in notes(text)
    assert not list(s.glob("*.png"))


# -- reproduce --------------------------------------------------------------------------------
def test_reproduce_report(tmp_path):
    d = tmp_path / "repro"
    make_comparison(d / "compare-paper")
    make_gate_sweep(d / "sweep-gate")
    (d / "compare-broken").mkdir(parents=True)
    (d / "compare-broken" / "comparison.json").write_text("{", encoding="utf-8")
    write_json(d / "claims.json", {
        "claims": [
            {"claim": "up to 90% less training time", "paper": "90%", "profile": "paper",
             "ours": "16% less total time", "verdict": "partly", "details": "at 1 as gates"},
            {"claim": "kappa > 1e4 routed classically", "paper": "yes", "profile": "paper",
             "ours": "yes", "verdict": "supported", "details": ""},
            {"claim": "advantage on realistic hardware", "paper": "implied",
             "profile": "surface-code", "ours": "classical wins", "verdict": "not supported",
             "details": "readout dominates"},
            {"claim": "κ falls ~1000×", "paper": "~1000×", "profile": "any",
             "ours": "no exact κ recorded", "verdict": "n/a", "details": ""},
            {"claim": "faster than SGD", "paper": "faster", "profile": "paper",
             "ours": "12% less", "verdict": "supported", "details": ""},
        ],
        "comparisons": ["compare-paper", "compare-broken"],
        "sweeps": ["sweep-gate", "sweep-missing"]})
    assert detect_kind(d) == "reproduce"
    text = read_html(write_report(d))
    assert_self_contained(text)
    assert "<p>partly: 1, supported: 2, not supported: 1, n/a: 1</p>" in text
    # each verdict coloured by its class; n/a stays plain
    assert "class='partly'>partly<" in text
    assert text.count("class='supported'>supported<") == 2
    assert "class='not-supported'>not supported<" in text
    assert row_starting(text, "κ falls ~1000×")[4] == "n/a"
    assert "<td>n/a</td>" in text
    assert "sweep-missing: no sweep.json there; its plots are skipped." in notes(text)
    assert any(n.startswith("compare-broken: could not be read (") and "comparison.json" in n
               for n in notes(text))
    assert_png(d / "compare-paper_comparison_metric_time.png")
    assert_png(d / "compare-paper_comparison_times.png")
    assert not (d / "compare-paper_comparison_metric_step.png").exists()  # main plots only
    assert_png(d / "sweep-gate_sweep_crossover.png")
    found = re.findall(r"class='crossover'>([^<]+)<", text)
    assert [float(f) for f in found] == pytest.approx([CROSSOVER], rel=1e-3)
    # sub-directories are read, not written to
    assert not (d / "compare-paper" / "report.html").exists()
    assert not (d / "sweep-gate" / "report.html").exists()
