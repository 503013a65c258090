import json
import time

import pytest

from qnewton.accounting import Ledger, SolveRecord


def record(choice: str, **kw) -> SolveRecord:
    base = dict(
        step=0, block="w", n=10, d=10, nnz=100, kappa=5.0, kappa_log10=0.69897,
        kappa_kind="upper", kappa_method="regularization", alpha=1.0, reg=0.1, shift=0.1,
        predicted_quantum_seconds=1e-3, predicted_classical_seconds=2e-3,
        predicted_classical={"cholesky": 2e-3}, classical_solver="cholesky", policy="cost",
        choice=choice, solver="cholesky", hardware="paper", qlsa="jennings", readout="state",
        queries=1e5,
    )
    base.update(kw)
    return SolveRecord(**base)


def test_phases_accumulate_measured_time():
    ledger = Ledger()
    with ledger.phase("solve"):
        time.sleep(0.02)
    with ledger.phase("solve"):
        time.sleep(0.01)
    assert ledger.measured["solve"] >= 0.03
    assert ledger.measured_seconds == pytest.approx(ledger.measured["solve"])
    with pytest.raises(ValueError, match="phase must be one of"), ledger.phase("lunch"):
        pass


def test_summary_keeps_measured_and_modeled_apart():
    ledger = Ledger()
    ledger.measured["solve"] = 2.0
    ledger.add_record(record("quantum", modeled_quantum_seconds=0.5, emulation_seconds=0.25))
    ledger.add_record(record("classical", measured_classical_seconds=0.1))
    summary = ledger.summary()
    assert summary["measured_seconds"] == 2.0
    assert summary["modeled_quantum_seconds"] == 0.5
    assert summary["modeled_by_profile"] == {"paper": 0.5}
    assert summary["emulation_seconds"] == 0.25
    assert summary["total_seconds"] == pytest.approx(2.0 - 0.25 + 0.5)
    assert summary["quantum_solves"] == 1 and summary["classical_solves"] == 1


def test_jsonl_export_and_state_round_trip(tmp_path):
    ledger = Ledger()
    ledger.add_record(record("classical", measured_classical_seconds=0.1))
    ledger.add_event(3, "gradient-fallback", "w: not a descent direction", block="w")
    path = tmp_path / "solves.jsonl"
    ledger.write_jsonl(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["choice"] == "classical"
    assert rows[0]["measured_classical_seconds"] == 0.1
    restored = Ledger()
    restored.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    assert restored.summary() == ledger.summary()
    assert restored.events == ledger.events


def test_summary_counts_parameters_moved_by_newton_and_by_fallbacks():
    ledger = Ledger()
    assert ledger.summary()["newton_parameter_fraction"] is None
    for _ in range(3):  # three steps of a four-block model
        ledger.add_update("fc1.weight", 1000, "newton", matrix_free=True)
        ledger.add_update("fc1.bias", 10, "newton")
        ledger.add_update("fc2.weight", 500, "fallback", reason="solve-failed")
        ledger.add_update("fc2.bias", 5, "stationary")
    ledger.add_update("fc2.weight", 500, "fallback", reason="no-solver")
    ledger.add_update("fc1.bias", 10, "not-applied")
    summary = ledger.summary()
    assert summary["parameter_updates"] == {
        "newton": 3 * 1010, "fallback": 4 * 500, "stationary": 3 * 5, "not-applied": 10,
        "newton_matrix_free": 3 * 1000}
    assert summary["newton_parameter_fraction"] == 3030 / (3030 + 2000)
    assert summary["fallback_reasons"] == {"solve-failed": 3, "no-solver": 1}
    assert summary["updates_by_block"]["fc2.weight"] == {
        "parameters": 500, "newton": 0, "fallback": 4, "stationary": 0, "not-applied": 0,
        "newton_matrix_free": 0}
    assert summary["updates_by_block"]["fc1.weight"]["newton_matrix_free"] == 3
    restored = Ledger()
    restored.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    assert restored.summary() == summary
    old = ledger.state_dict()
    del old["updates"], old["fallback_reasons"]  # a checkpoint from before these counts
    restored.load_state_dict(old)
    assert restored.summary()["parameter_updates"]["newton"] == 0
    with pytest.raises(ValueError, match="kind must be one of"):
        ledger.add_update("fc1.weight", 1000, "sgd")


def test_records_without_kappa_round_trip():
    ledger = Ledger()
    ledger.add_record(record("classical", kappa=None, kappa_log10=None, alpha=None,
                             kappa_kind="not-estimated", kappa_method="policy-classical",
                             predicted_quantum_seconds=None, queries=None,
                             quantum_rejection="policy-classical"))
    state = json.loads(json.dumps(ledger.state_dict(), allow_nan=False))
    restored = Ledger()
    restored.load_state_dict(state)
    assert restored.records == ledger.records
    assert restored.records[0].kappa is None and restored.records[0].representation == "dense"
