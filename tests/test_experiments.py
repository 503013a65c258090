"""compare, sweep and reproduce on tiny runs: which runs they make, what their rows hold."""

import dataclasses
import json
import re

import pytest

import qnewton.experiments.runs as experiment_runs
from qnewton.experiments import (
    claims_markdown,
    compare,
    format_table,
    reproduce,
    sweep,
    time_to_target,
)
from qnewton.experiments.compare import profile_independent
from qnewton.experiments.runs import fmt
from qnewton.reports import write_report
from qnewton.training import TrainConfig

BASE = TrainConfig(task="digits", tiny=True, epochs=1, batch_size=64, max_steps=2)


def run_dirs(out):
    return sorted(p.name for p in (out / "runs").iterdir())


def forbid_training(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(experiment_runs, "train", no_training)


def test_compare_runs_what_no_profile_can_change_once(tmp_path, monkeypatch):
    unreachable = 1.0  # no tiny two-step run gets every test sample right
    result = compare(BASE, ["sgd", "newton", "qnewton"], ["paper", "surface-code"], tmp_path,
                     target_accuracy=unreachable, progress=False)
    # SGD and classical Newton cannot route to quantum: one run each; qnewton one per profile
    assert run_dirs(tmp_path) == ["newton", "qnewton@paper", "qnewton@surface-code", "sgd"]
    rows = result["rows"]
    assert [(r["optimizer"], r["profile"]) for r in rows] == [
        (o, p) for p in ("paper", "surface-code") for o in ("sgd", "newton", "qnewton")]
    assert [r["label"] for r in rows[:3]] == ["sgd@paper (shared)", "newton@paper (shared)",
                                              "qnewton@paper"]
    by = {(r["optimizer"], r["profile"]): r for r in rows}
    paired = ("label", "hardware", "profile")
    for name in ("sgd", "newton"):
        on_paper, on_surface = by[name, "paper"], by[name, "surface-code"]
        assert on_paper["shared_run"] and on_paper["run_dir"] == f"runs/{name}"
        assert ({k: v for k, v in on_paper.items() if k not in paired}
                == {k: v for k, v in on_surface.items() if k not in paired})
        summary = json.loads((tmp_path / on_paper["run_dir"] / "summary.json").read_text())
        assert on_paper["total_seconds"] == summary["total_seconds"]
    assert by["qnewton", "paper"]["run_dir"] == "runs/qnewton@paper"
    assert by["qnewton", "surface-code"]["run_dir"] == "runs/qnewton@surface-code"
    assert not by["qnewton", "paper"]["shared_run"]
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["rows"] == rows and saved["metric"] == "accuracy" and saved["repeats"] == 1
    for row in rows:
        assert row["time_to_target_total"] is None and row["time_to_target_measured"] is None
    table = format_table(rows, "accuracy")
    assert "qnewton@surface-code" in table and "measured" in table and "modeled" in table
    assert "(shared): one run shared by every profile" in table
    # A second call reuses the finished runs (no training at all) instead of failing on
    # existing directories. Timed to the best accuracy SGD reached, SGD's time to target is
    # the cumulative time of its first evaluation at that accuracy, on each clock.
    sgd_steps = [json.loads(line) for line in
                 (tmp_path / "runs" / "sgd" / "steps.jsonl").read_text().splitlines()]
    evaluations = [r for r in sgd_steps if "test_accuracy" in r]
    best = max(r["test_accuracy"] for r in evaluations)
    first_best = next(r for r in evaluations if r["test_accuracy"] == best)
    forbid_training(monkeypatch)
    again = compare(BASE, ["sgd", "newton", "qnewton"], ["paper", "surface-code"], tmp_path,
                    target_accuracy=best, progress=False)
    assert [r["final_metric"] for r in again["rows"]] == [r["final_metric"] for r in rows]
    sgd = again["rows"][0]
    assert sgd["time_to_target_total"] == first_best["total_seconds"]
    assert sgd["time_to_target_measured"] == first_best["measured_seconds"]
    assert not (tmp_path / "report.html").exists()  # compare itself writes no report
    html = write_report(tmp_path).read_text()
    assert "qnewton@paper" in html


@pytest.mark.parametrize(("optimizer", "policy", "independent"), [
    ("sgd", None, True), ("momentum", None, True), ("adam", None, True),
    ("newton", None, True), ("newton-inverse", None, True),  # policy classical
    ("qnewton", None, False), ("quantum", None, False),  # policies cost and quantum
    ("newton", "threshold", False), ("qnewton", "classical", True),
    ("sgd", "quantum", True),  # a first-order optimizer has no policy to apply
])
def test_which_runs_no_profile_can_change(optimizer, policy, independent):
    assert profile_independent(TrainConfig(optimizer=optimizer, policy=policy)) is independent


def test_compare_repeats_interleave_and_report_median_and_spread(tmp_path, monkeypatch):
    result = compare(BASE, ["sgd", "newton"], ["paper"], tmp_path, repeats=3, progress=False)
    assert run_dirs(tmp_path) == ["newton", "newton.repeat2", "newton.repeat3", "sgd",
                                  "sgd.repeat2", "sgd.repeat3"]
    # interleaved, each round starting one run later: sgd newton | newton sgd | sgd newton
    started = sorted(run_dirs(tmp_path), key=lambda name: (
        tmp_path / "runs" / name / "config.json").stat().st_mtime_ns)
    assert started == ["sgd", "newton", "newton.repeat2", "sgd.repeat2", "sgd.repeat3",
                       "newton.repeat3"]
    for row in result["rows"]:
        assert row["repeats"] == 3 and len(row["run_dirs"]) == 3
        summaries = [json.loads((tmp_path / d / "summary.json").read_text())
                     for d in row["run_dirs"]]
        for key in ("measured_seconds", "total_seconds"):
            values = sorted(s[key] for s in summaries)
            assert row[key] == values[1]  # the median of three
            assert row["spread"][key] == [values[0], values[2]]
        # training is deterministic: only the times differ between repeats
        assert {s["test_accuracy"] for s in summaries} == {row["final_metric"]}
    table = format_table(result["rows"], "accuracy")
    low, high = result["rows"][0]["spread"]["total_seconds"]
    assert f"({fmt(low)}-{fmt(high)})" in table
    assert "median (min-max) over 3 repeats" in table
    forbid_training(monkeypatch)  # all three repeats are reused
    assert compare(BASE, ["sgd", "newton"], ["paper"], tmp_path, repeats=3,
                   progress=False)["rows"] == result["rows"]


def test_compare_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="optimizers must be one of .*; got .lbfgs."):
        compare(BASE, ["sgd", "lbfgs"], ["paper"], tmp_path)
    with pytest.raises(ValueError, match="hardware must be one of .*; got .abacus."):
        compare(BASE, ["sgd"], ["abacus"], tmp_path)
    assert not (tmp_path / "runs").exists()


def test_gate_time_sweep_moves_routing_to_quantum(tmp_path):
    # the default profile (surface-code) has no gate time: such a sweep is refused up front
    with pytest.raises(ValueError, match="hardware must be a gate-count profile .*'surface-code'"):
        sweep(BASE, "gate-time", [1e-6, 1e-18], tmp_path / "refused", progress=False)
    paper = dataclasses.replace(BASE, hardware="paper")
    result = sweep(paper, "gate-time", [1e-6, 1e-18], tmp_path, progress=False)
    slow, fast = result["rows"]
    assert slow["value"] == 1e-6 and fast["value"] == 1e-18
    assert fast["quantum_solves"] > slow["quantum_solves"]
    assert result["baseline"]["label"] == "newton"
    assert json.loads((tmp_path / "sweep.json").read_text())["param"] == "gate-time"


def test_hidden_sweep_takes_whole_numbers_given_as_floats(tmp_path):
    config = TrainConfig(task="digits", optimizer="sgd", tiny=True, max_steps=1)
    result = sweep(config, "hidden", [4.0, 6], tmp_path, progress=False)
    assert [r["value"] for r in result["rows"]] == [4, 6]
    assert all(isinstance(r["value"], int) for r in result["rows"])
    assert run_dirs(tmp_path) == ["hidden=4", "hidden=6"]
    assert result["baseline"] is None


@pytest.mark.parametrize(("param", "values", "message"), [
    ("reg", [1e-3, float("nan")], "values must all be finite numbers >= 0 for param reg, "
                                  "got nan (value 2 of 2)"),
    ("reg", [1e-3, 1e-3], "values must not repeat an entry, got 0.001 twice"),
    ("prune", [0.0], "values must all be pruning ratios in (0, 1]"),
    ("gate-time", [float("inf")], "values must all be gate times in seconds, finite and > 0"),
    ("hidden", [0], "values must all be whole numbers >= 1"),
    ("hidden", [], "values must list at least one value"),
    ("width", [1], "param must be one of reg, prune, gate-time, hidden"),
])
def test_sweep_checks_every_value_first(tmp_path, monkeypatch, param, values, message):
    forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=re.escape(message)):
        sweep(BASE, param, values, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_time_to_target():
    steps = [{"test_accuracy": 0.1, "total_seconds": 0.0},
             {"loss": 1.0, "total_seconds": 1.0},
             {"test_accuracy": 0.8, "total_seconds": 2.0},
             {"test_accuracy": 0.9, "total_seconds": 3.0}]
    assert time_to_target(steps, "accuracy", 0.75, "total_seconds") == 2.0
    assert time_to_target(steps, "accuracy", 0.95, "total_seconds") is None
    assert time_to_target(steps, "accuracy", None, "total_seconds") is None
    ppl = [{"test_perplexity": 9.0, "t": 1.0}, {"test_perplexity": 4.0, "t": 2.0}]
    assert time_to_target(ppl, "perplexity", 5.0, "t") == 2.0  # lower is better


def test_reproduce_writes_a_claims_table(tmp_path):
    result = reproduce(tmp_path, tiny=True, progress=False)
    claims = result["claims"]
    assert [c["profile"] for c in claims[:-1]] == [
        p for p in ("paper", "paper-attosecond", "surface-code") for _ in range(4)]
    # per profile: two Newton time claims, the SGD claim and the routing claim; one κ claim
    assert len(claims) == 3 * 4 + 1
    text = (tmp_path / "claims.md").read_text()
    assert text == claims_markdown(claims)
    assert "90%" in text and "κ > 1e4" in text
    assert result["repeats"] == 2 and result["comparisons"] == ["compare"]
    # first-order and classical Newton run once per repeat for all three profiles, qnewton
    # once per profile and repeat: (4 + 3) x 2 runs
    names = run_dirs(tmp_path / "compare")
    assert len(names) == 14
    assert {n for n in names if "@" not in n} == {
        f"{o}{r}" for o in ("sgd", "adam", "newton", "newton-inverse") for r in ("", ".repeat2")}
    allowed = {"supported", "partly", "not supported", "n/a", "no difference (noise)"}
    assert {c["verdict"] for c in claims} <= allowed
    for claim in claims[:3]:  # timed claims give both medians with their spread over 2 runs
        if claim["verdict"] != "n/a":
            assert len(re.findall(r"\(runs [^,;()]+, [^,;()]+ s[;)]", claim["details"])) == 2
    comparison = json.loads((tmp_path / "compare" / "comparison.json").read_text())
    sgd = [r for r in comparison["rows"] if r["optimizer"] == "sgd"]
    assert len(sgd) == 3 and len({r["run_dir"] for r in sgd}) == 1
    assert "Claims" in write_report(tmp_path).read_text()
