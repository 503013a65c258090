import json

import pytest

from qnewton.experiments import (
    claims_markdown,
    compare,
    format_table,
    reproduce,
    sweep,
    time_to_target,
)
from qnewton.experiments.claims import kappa_decay_claim, kappa_routing_claim, time_claims
from qnewton.reports import write_report
from qnewton.training import TrainConfig

BASE = TrainConfig(task="digits", tiny=True, epochs=1, batch_size=64, max_steps=3)


def test_compare_runs_each_optimizer_and_profile_once(tmp_path):
    unreachable = 1.01  # no accuracy exceeds 1
    result = compare(BASE, ["sgd", "qnewton"], ["paper", "surface-code"], tmp_path,
                     target=unreachable, progress=False)
    labels = [r["label"] for r in result["rows"]]
    assert labels == ["sgd", "qnewton@paper", "qnewton@surface-code"]
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["rows"] == result["rows"] and saved["metric"] == "accuracy"
    for row in result["rows"]:
        assert row["time_to_target_total"] is None and row["time_to_target_measured"] is None
        assert (tmp_path / row["run_dir"] / "summary.json").exists()
    table = format_table(result["rows"], "accuracy")
    assert "qnewton@surface-code" in table and "measured" in table and "modeled" in table
    # A second call reuses the finished runs instead of failing on existing directories. Timed
    # to the best accuracy SGD reached, SGD's time to target is the cumulative time of its first
    # evaluation at that accuracy, on each clock.
    sgd_steps = [json.loads(line) for line in
                 (tmp_path / "runs" / "sgd" / "steps.jsonl").read_text().splitlines()]
    evaluations = [r for r in sgd_steps if "test_accuracy" in r]
    best = max(r["test_accuracy"] for r in evaluations)
    first_best = next(r for r in evaluations if r["test_accuracy"] == best)
    again = compare(BASE, ["sgd", "qnewton"], ["paper", "surface-code"], tmp_path, target=best,
                    progress=False)
    assert [r["final_metric"] for r in again["rows"]] == [r["final_metric"]
                                                          for r in result["rows"]]
    sgd = again["rows"][0]
    assert sgd["time_to_target_total"] == first_best["total_seconds"]
    assert sgd["time_to_target_measured"] == first_best["measured_seconds"]
    assert not (tmp_path / "report.html").exists()  # compare itself writes no report
    html = write_report(tmp_path).read_text()
    assert "qnewton@paper" in html


def test_compare_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="optimizers must be one of .*; got .lbfgs."):
        compare(BASE, ["sgd", "lbfgs"], ["paper"], tmp_path)
    with pytest.raises(ValueError, match="hardware must be one of .*; got .abacus."):
        compare(BASE, ["sgd"], ["abacus"], tmp_path)
    assert not (tmp_path / "runs").exists()


def test_gate_time_sweep_moves_routing_to_quantum(tmp_path):
    result = sweep(BASE, "gate-time", [1e-6, 1e-18], tmp_path, progress=False)
    slow, fast = result["rows"]
    assert slow["value"] == 1e-6 and fast["value"] == 1e-18
    assert fast["quantum_solves"] > slow["quantum_solves"]
    assert result["baseline"]["label"] == "newton"
    assert json.loads((tmp_path / "sweep.json").read_text())["param"] == "gate-time"


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
    profiles = {c["profile"] for c in claims}
    assert {"paper", "paper-attosecond", "surface-code"} <= profiles
    # per profile: two Newton time claims, the SGD claim and the routing claim; one κ claim
    assert len(claims) == 3 * 4 + 1
    text = (tmp_path / "claims.md").read_text()
    assert text == claims_markdown(claims)
    assert "90%" in text and "κ > 1e4" in text
    assert (tmp_path / "compare-surface-code" / "comparison.json").exists()


# -- verdicts from constructed runs, whose right answers are known ----------------------------
def _run_files(base, name, *, steps=(), solves=()):
    run_dir = base / name
    run_dir.mkdir(parents=True)
    for file, rows in (("steps.jsonl", steps), ("solves.jsonl", solves)):
        (run_dir / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return name


def _reaching(accuracy, seconds):
    """Steps of a run evaluated at 0.5 before training and at ``accuracy`` after ``seconds``."""
    return [{"test_accuracy": 0.5, "total_seconds": 0.0, "measured_seconds": 0.0},
            {"test_accuracy": accuracy, "total_seconds": seconds, "measured_seconds": seconds}]


@pytest.mark.parametrize(("quantum_solves", "expected"), [
    # qnewton 1 s vs newton 4 s (75% less), vs explicit inverse 1.25 s (20% less), vs SGD 2 s
    (5, ["supported", "partly", "supported"]),
    # without quantum solves qnewton is classical Newton: no gain over it counts as quantum
    (0, ["not supported", "partly", "supported"]),
])
def test_time_claim_verdicts(tmp_path, quantum_solves, expected):
    rows = {
        "qnewton": {"run_dir": _run_files(tmp_path, "q", steps=_reaching(0.9, 1.0)),
                    "quantum_solves": quantum_solves},
        "newton": {"run_dir": _run_files(tmp_path, "n", steps=_reaching(0.9, 4.0))},
        "newton-inverse": {"run_dir": _run_files(tmp_path, "i", steps=_reaching(0.9, 1.25))},
        "sgd": {"run_dir": _run_files(tmp_path, "s", steps=_reaching(0.8, 2.0)),
                "final_metric": 0.8},
    }
    claims = time_claims("paper", tmp_path, rows, "accuracy", 0.9)
    assert [c["verdict"] for c in claims] == expected
    assert claims[0]["ours"].startswith("75.0% less total time")
    assert claims[2]["ours"] == "50.0% less total time than SGD"


@pytest.mark.parametrize(("solves", "expected"), [
    ([(1e5, "classical"), (1e6, "classical"), (10.0, "quantum")], "supported"),
    ([(1e5, "classical"), (1e6, "quantum")], "partly"),
    ([(1e5, "quantum")], "not supported"),
    ([(1e4, "quantum"), (10.0, "classical")], "n/a"),  # κ = 1e4 is not above 1e4
])
def test_kappa_routing_claim_verdicts(tmp_path, solves, expected):
    run_dir = _run_files(tmp_path, "q", solves=[{"kappa": k, "choice": c} for k, c in solves])
    assert kappa_routing_claim("paper", tmp_path, {"run_dir": run_dir})["verdict"] == expected


@pytest.mark.parametrize(("first_last", "expected"), [
    ([(1e6, 1e3), (100.0, 50.0)], "supported"),  # best block falls 1000x
    ([(500.0, 10.0)], "partly"),  # 50x
    ([(20.0, 10.0)], "not supported"),  # 2x
    ([], "n/a"),  # no exact κ recorded
])
def test_kappa_decay_claim_verdicts(tmp_path, first_last, expected):
    solves = []
    for b, (first, last) in enumerate(first_last):
        solves += [{"block": f"{b}.weight", "kappa_exact": first},
                   {"block": f"{b}.weight", "kappa_exact": None},
                   {"block": f"{b}.weight", "kappa_exact": last}]
    run_dir = _run_files(tmp_path, "q", solves=solves)
    comparison = {"rows": [{"optimizer": "qnewton", "run_dir": run_dir}]}
    assert kappa_decay_claim(tmp_path, comparison)["verdict"] == expected
