import json

import pytest

from qnewton.experiments import (
    claims_markdown,
    compare,
    crossover,
    format_table,
    reproduce,
    sweep,
    time_to_target,
)
from qnewton.reports import write_report
from qnewton.training import TrainConfig

BASE = TrainConfig(task="digits", tiny=True, epochs=1, batch_size=64, max_steps=3)


def test_compare_runs_each_optimizer_and_profile_once(tmp_path):
    result = compare(BASE, ["sgd", "qnewton"], ["paper", "surface-code"], tmp_path, target=0.0,
                     progress=False)
    labels = [r["label"] for r in result["rows"]]
    assert labels == ["sgd", "qnewton@paper", "qnewton@surface-code"]
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["rows"] == result["rows"] and saved["metric"] == "accuracy"
    for row in result["rows"]:
        assert row["time_to_target_total"] is not None  # target 0 is reached at once
        assert (tmp_path / row["run_dir"] / "summary.json").exists()
    table = format_table(result["rows"], "accuracy")
    assert "qnewton@surface-code" in table and "measured" in table and "modeled" in table
    # A second call reuses the finished runs instead of failing on existing directories.
    again = compare(BASE, ["sgd", "qnewton"], ["paper", "surface-code"], tmp_path, target=0.0,
                     progress=False)
    assert [r["final_metric"] for r in again["rows"]] == [r["final_metric"]
                                                          for r in result["rows"]]
    assert not (tmp_path / "report.html").exists()  # compare itself writes no report
    html = write_report(tmp_path).read_text()
    assert "qnewton@paper" in html


def test_compare_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="optimizers must be among"):
        compare(BASE, ["sgd", "lbfgs"], ["paper"], tmp_path)
    with pytest.raises(ValueError, match="hardware must be among"):
        compare(BASE, ["sgd"], ["abacus"], tmp_path)
    assert not (tmp_path / "runs").exists()


def test_gate_time_sweep_moves_routing_to_quantum(tmp_path):
    result = sweep(BASE, "gate-time", [1e-6, 1e-18], tmp_path, progress=False)
    slow, fast = result["rows"]
    assert slow["value"] == 1e-6 and fast["value"] == 1e-18
    assert fast["quantum_solves"] > slow["quantum_solves"]
    assert result["baseline"]["label"] == "newton"
    assert json.loads((tmp_path / "sweep.json").read_text())["param"] == "gate-time"


def test_time_to_target_and_crossover_helpers():
    steps = [{"test_accuracy": 0.1, "total_seconds": 0.0},
             {"loss": 1.0, "total_seconds": 1.0},
             {"test_accuracy": 0.8, "total_seconds": 2.0},
             {"test_accuracy": 0.9, "total_seconds": 3.0}]
    assert time_to_target(steps, "accuracy", 0.75, "total_seconds") == 2.0
    assert time_to_target(steps, "accuracy", 0.95, "total_seconds") is None
    assert time_to_target(steps, "accuracy", None, "total_seconds") is None
    ppl = [{"test_perplexity": 9.0, "t": 1.0}, {"test_perplexity": 4.0, "t": 2.0}]
    assert time_to_target(ppl, "perplexity", 5.0, "t") == 2.0  # lower is better
    rows = [{"value": 1e-6, "total_seconds": 9.0}, {"value": 1e-9, "total_seconds": 2.0},
            {"value": 1e-12, "total_seconds": 1.0}]
    assert crossover(rows, 5.0) == 1e-9
    assert crossover(rows, 0.5) is None


def test_reproduce_writes_a_claims_table(tmp_path):
    result = reproduce(tmp_path, tiny=True, progress=False)
    claims = result["claims"]
    profiles = {c["profile"] for c in claims}
    assert {"paper", "paper-attosecond", "surface-code"} <= profiles
    assert all(c["verdict"] in ("supported", "not supported", "partly", "n/a") for c in claims)
    text = (tmp_path / "claims.md").read_text()
    assert text == claims_markdown(claims)
    assert "90%" in text and "κ > 1e4" in text
    assert (tmp_path / "compare-surface-code" / "comparison.json").exists()
