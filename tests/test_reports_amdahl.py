"""Where quantum would pay off (qnewton.reports.amdahl): measured phase shares with Amdahl's
bound, and each block's modeled break-even gate time and error rate."""

from __future__ import annotations

import dataclasses
import math

import pytest
from reports_fixtures import make_newton_run

from qnewton.accounting import PHASES
from qnewton.quantum import get_profile, quantum_cost
from qnewton.reports.amdahl import (
    BISECTION_RTOL,
    amdahl_html,
    block_break_evens,
    break_even,
    phase_shares,
    run_profile,
)
from qnewton.reports.reading import load_run

PHASE_SECONDS = {"forward_backward": 0.4, "curvature": 1.6, "conditioning": 0.2,
                 "estimation": 2.8, "scheduling": 0.1, "solve": 1.3, "update": 0.03}


def record(block="fc1.weight", n=256, d=256, kappa=300.0, alpha=20.0, classical=1e-2, **kw):
    return {"step": 3, "block": block, "n": n, "d": d, "nnz": n * d, "kappa": kappa,
            "alpha": alpha, "qlsa": "jennings", "readout": "state",
            "predicted_classical_seconds": classical, **kw}


def modeled(rec, profile, eps=1e-2):
    return quantum_cost(rec["n"], rec["d"], rec["kappa"], eps, alpha=rec["alpha"],
                        qlsa=rec["qlsa"], profile=profile, readout=rec["readout"],
                        nnz=rec["nnz"]).total_seconds


def test_phase_shares_sum_to_one_and_give_amdahl_bound():
    s = phase_shares(PHASE_SECONDS)
    assert math.fsum(s.shares.values()) == pytest.approx(1.0, abs=1e-12)
    total = sum(PHASE_SECONDS.values())
    assert s.measured_seconds == pytest.approx(total)
    assert s.shares["solve"] == pytest.approx(1.3 / total)
    assert s.seconds["overhead"] == pytest.approx(2.8 + 0.1)  # estimation + scheduling
    assert s.seconds["other"] == pytest.approx(0.2 + 0.03)
    classical = total - 2.9  # the classical option needs no κ estimation or routing
    assert s.classical_seconds == pytest.approx(classical)
    assert s.amdahl_max_speedup == pytest.approx(1.0 / (1.0 - 1.3 / classical))
    assert s.net_max_speedup == pytest.approx(classical / (classical - 1.3 + 2.9))
    assert phase_shares({"solve": 2.0}).amdahl_max_speedup == math.inf


def test_emulation_is_not_removable_and_routed_solves_count_at_their_classical_price():
    # 0.5 s of the 1.3 s solve phase emulated quantum solves that would cost 0.2 s classically
    s = phase_shares(PHASE_SECONDS, emulation_seconds=0.5, routed_classical_seconds=0.2)
    total = sum(PHASE_SECONDS.values())
    classical = total - 0.5 - 2.9 + 0.2
    removable = (1.3 - 0.5) + 0.2
    assert s.seconds["solve"] == pytest.approx(0.8) and s.seconds["emulation"] == 0.5
    assert s.classical_seconds == pytest.approx(classical)
    assert s.removable_seconds == pytest.approx(removable)
    assert s.amdahl_max_speedup == pytest.approx(1.0 / (1.0 - removable / classical))
    assert s.net_max_speedup == pytest.approx(classical / (classical - removable + 2.9))
    assert s.net_max_speedup < 1.0  # 2.9 s of κ estimation and routing to save 1.0 s
    # all the solve time was emulation and nothing is routed: nothing is removable
    only = phase_shares({"solve": 1.0, "curvature": 1.0}, emulation_seconds=1.0)
    assert only.removable_share == 0.0 and only.amdahl_max_speedup == 1.0
    with pytest.raises(ValueError, match="exceeds the solve phase"):
        phase_shares({"solve": 1.0}, emulation_seconds=2.0)


@pytest.mark.parametrize(("bad", "match"), [
    ({"training": 1.0}, "^measured_by_phase has phase 'training'; allowed phases: "
                        + ", ".join(PHASES)),
    ({"solve": -1.0}, r"^measured_by_phase\['solve'\] must be a finite number >= 0"),
    ({"solve": float("nan")}, "must be a finite number"),
    ({"solve": 0.0}, "all zeros"),
    ([1.0], "must be a mapping"),
])
def test_phase_shares_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        phase_shares(bad)


def test_break_even_gate_time_equalizes_quantum_and_classical_on_paper():
    rec = record()
    prof = get_profile("paper")
    b = break_even(rec, 1e-2, prof)
    assert b.gate_field == "gate_time_s" and b.gate_time_s == 1e-9
    assert b.quantum_seconds == pytest.approx(modeled(rec, prof), rel=1e-12)
    at = dataclasses.replace(prof, gate_time_s=b.break_even_gate_time_s)
    assert modeled(rec, at) == pytest.approx(rec["predicted_classical_seconds"], rel=1e-6)
    assert b.error_rate is None and "n/a" in b.error_note


def test_break_even_on_a_fault_tolerant_profile():
    # a small well-conditioned block and a generous classical time, so both break-evens exist
    rec = record(n=64, d=8, kappa=10.0, alpha=1.0, classical=50.0)
    prof = get_profile("surface-code", charge_loading=False)
    b = break_even(rec, 1e-2, prof)
    assert b.gate_field == "t_2q_s"
    t = b.break_even_gate_time_s
    at = dataclasses.replace(prof, t_2q_s=t, t_meas_s=prof.t_meas_s * t / prof.t_2q_s)
    assert modeled(rec, at) == pytest.approx(50.0, rel=1e-6)
    # error rate: a step function of p (code distance); quantum is no slower at the answer and
    # slower just above it
    p = b.break_even_error_rate
    assert p is not None and 0 < p < 0.01
    assert modeled(rec, dataclasses.replace(prof, physical_error_rate=p)) <= 50.0
    above = min(p * (1 + 10 * BISECTION_RTOL), 0.0099999999)
    assert modeled(rec, dataclasses.replace(prof, physical_error_rate=above)) > 50.0


def test_break_even_says_when_there_is_none():
    # surface-code with loading and vector readout: nothing makes a 1e-6 s classical solve lose
    rec = record(classical=1e-6, readout="vector")
    b = break_even(rec, 1e-2, get_profile("surface-code"))
    assert b.break_even_gate_time_s is None and b.gate_note.startswith("none")
    assert b.break_even_error_rate is None and b.error_note.startswith("none")


def test_qdk_profiles_use_their_own_model_twin():
    b = break_even(record(), 1e-2, get_profile("qdk-surface-code"))
    assert b.model == "qdk-surface-code (our model)"
    assert b.quantum_seconds == pytest.approx(modeled(record(), get_profile("surface-code")))


def test_block_break_evens_take_each_block_s_last_costed_record():
    solves = [record(block="a", kappa=100.0), record(block="b"), record(block="a", kappa=50.0),
              record(block="a", kappa=None)]
    out = block_break_evens(solves, 1e-2, get_profile("paper"))
    assert [(b.block, b.kappa) for b in out] == [("a", 50.0), ("b", 300.0)]


def test_run_profile_applies_the_gate_time_override_and_names_presets():
    assert run_profile("paper", {"gate_time": 1e-18}).gate_time_s == 1e-18
    assert run_profile("surface-code", {}).name == "surface-code"
    with pytest.raises(ValueError, match="hardware must be one of paper"):
        run_profile("annealer", {})


def test_html_section_from_a_run(tmp_path):
    run = load_run(make_newton_run(tmp_path / "run"))
    html = amdahl_html(run)
    assert "Amdahl" in html and "free, instantaneous QLSA" in html
    assert "emulation of quantum solves (neither option spends it: not removable)" in html
    assert "only the quantum option needs them" in html


def test_blocks_without_kappa_are_named_as_left_out(tmp_path):
    run = load_run(make_newton_run(tmp_path / "run"))
    for rec in run.solves:
        if rec.get("block") == run.blocks()[0]:
            rec.update(kappa=None, alpha=None, quantum_rejection="guaranteed-rejection")
    html = amdahl_html(run)
    assert f"Left out (no solve record with κ, α and a classical prediction): " \
           f"{run.blocks()[0]} (guaranteed-rejection)" in html.replace("&#x27;", "'")
