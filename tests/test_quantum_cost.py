"""Modeled quantum solve time (qnewton.quantum.cost) and readout (qnewton.quantum.readout)."""

from __future__ import annotations

import json
import math

import pytest

from qnewton.quantum import (
    QuantumCost,
    block_encoding_alpha,
    dalzell_queries,
    get_profile,
    jennings_queries,
    quantum_cost,
    readout_runs,
)
from qnewton.registry import UnknownNameError

# ----------------------------------------------------------------------------- gate-count profile


@pytest.mark.parametrize(("n", "gates"), [(1, 1), (2, 1), (3, 2), (1000, 10), (1024, 10),
                                          (1025, 11), (10**6, 20)])
def test_paper_profile_charges_ceil_log2_n_gates_per_query(n, gates):
    # arXiv 2405.00252: one query costs ⌈log₂N⌉ gates (at least one) of 1 ns on the "paper" preset
    c = quantum_cost(n, 1, 1e3, 1e-2, profile=get_profile("paper"))
    assert c.queries == jennings_queries(1e3, 1e-2)
    assert c.seconds_per_query == pytest.approx(gates * 1e-9, rel=1e-12)
    assert c.solve_seconds == pytest.approx(c.queries * gates * 1e-9, rel=1e-12)
    assert c.runs == 1 and c.readout == "state"
    assert c.loading_seconds == 0.0
    assert c.total_seconds == c.solve_seconds
    assert c.code_distance is None and c.toffolis_per_query is None and c.logical_qubits is None


# ----------------------------------------------------------------------------- fault-tolerant


@pytest.mark.parametrize(
    ("name", "target"),
    [("surface-code", 37e-6), ("surface-code-optimistic", 18e-6), ("trapped-ion", 56e-3)],
)
@pytest.mark.parametrize("kappa", [1e2, 1e3, 1e4])
def test_toffoli_times_match_the_profile_descriptions(name, target, kappa):
    # the presets' descriptions quote these per-Toffoli times for problems of this size
    c = quantum_cost(10**4, 100, kappa, 1e-2, profile=get_profile(name))
    assert target / 1.5 <= c.toffoli_seconds <= target * 1.5
    assert c.code_distance % 2 == 1
    # Toffolis at 3 logical cycles each, plus one synthesized rotation per query: 1 + T-per-
    # rotation logical cycles (the estimator's logical depth, arXiv 2211.07629)
    lc = c.logical_counts
    rotation_seconds = (lc["rotation_count"] * (1 + lc["t_per_rotation"])
                        * c.toffoli_seconds / 3 / c.queries)
    assert c.seconds_per_query == pytest.approx(
        c.toffolis_per_query * c.toffoli_seconds + rotation_seconds, rel=1e-9)
    assert rotation_seconds < 1e-3 * c.seconds_per_query  # (1 + 21) cycles vs ~3e4 Toffolis


def test_realistic_profiles_much_slower_than_paper():
    args = (10**4, 100, 1e3, 1e-2)
    paper = quantum_cost(*args, profile=get_profile("paper")).total_seconds
    sc = quantum_cost(*args, profile=get_profile("surface-code-optimistic")).total_seconds
    ion = quantum_cost(*args, profile=get_profile("trapped-ion")).total_seconds
    assert paper < sc < ion
    assert sc > 1e6 * paper


# ----------------------------------------------------------------------------- readout


def test_vector_readout_run_count():
    # ⌈N·ln N/δ²⌉ at N = 1000, δ = 0.1: 1000·6.907755/0.01 = 690775.5 → 690776 runs. This is the
    # O(N·log N/δ²) count of Kerenidis & Prakash's vector-state tomography (arXiv 1808.09266)
    # with constant 1; their algorithm uses 36·N·ln N/δ² samples, 36 times more.
    assert readout_runs(1000, "vector", 0.1) == 690776
    kerenidis_prakash_samples = 36 * 1000 * math.log(1000) / 0.1**2
    assert readout_runs(1000, "vector", 0.1) == pytest.approx(kerenidis_prakash_samples / 36,
                                                              rel=1e-5)
    # a tenth of the error costs a hundred times the runs; one amplitude needs one run
    assert readout_runs(1000, "vector", 0.01) == pytest.approx(
        100 * readout_runs(1000, "vector", 0.1), rel=1e-6)
    assert readout_runs(1, "vector", 0.1) == 1


def test_state_readout_is_one_run_whatever_the_error():
    assert readout_runs(10**6, "state", 0.1) == 1
    assert readout_runs(10**6, "state", 5.0) == 1  # δ is not used for "state"


@pytest.mark.parametrize(
    ("args", "param"),
    [((0, "state", 0.1), "n"), ((10, "bits", 0.1), "readout"), ((10, "vector", 0.0),
                                                                 "readout_error")],
)
def test_readout_bad_inputs(args, param):
    with pytest.raises(ValueError, match=f"^{param} must be"):
        readout_runs(*args)


def test_vector_readout_multiplies_the_solve_time():
    prof = get_profile("surface-code")
    vec = quantum_cost(1000, 10, 100.0, 1e-2, profile=prof)
    state = quantum_cost(1000, 10, 100.0, 1e-2, profile=prof, readout="state")
    assert vec.readout == "vector" and state.readout == "state"
    assert vec.runs == 690776 and state.runs == 1
    assert vec.solve_seconds == pytest.approx(state.solve_seconds * vec.runs, rel=1e-12)
    assert vec.total_seconds > 1e5 * state.total_seconds
    paper_vec = quantum_cost(1000, 10, 100.0, 1e-2, profile=get_profile("paper"), readout="vector")
    assert paper_vec.runs == vec.runs
    tighter = get_profile("surface-code", readout_error=0.01)
    assert quantum_cost(1000, 10, 100.0, 1e-2, profile=tighter).runs > 99 * vec.runs


# ----------------------------------------------------------------------------- data loading


def test_loading_charged_only_where_configured():
    n, d = 4096, 32
    # A: 4096·32 entries of 16 value bits + 12 column-index bits (⌈log₂ 4096⌉); b: 4096 × 16 bits
    # → (131072·28 + 4096·16)/8 = 466944 bytes at 1e10 bytes/s
    sc = quantum_cost(n, d, 100.0, 1e-2, profile=get_profile("surface-code"))
    assert sc.loading_seconds == pytest.approx(466944 / 1e10, rel=1e-12)
    assert sc.total_seconds == pytest.approx(sc.solve_seconds + sc.loading_seconds)
    no_load = get_profile("surface-code", charge_loading=False)
    assert quantum_cost(n, d, 100.0, 1e-2, profile=no_load).loading_seconds == 0.0
    assert quantum_cost(n, d, 100.0, 1e-2, profile=get_profile("paper")).loading_seconds == 0.0
    paper_load = get_profile("paper", charge_loading=True)
    assert quantum_cost(n, d, 100.0, 1e-2, profile=paper_load).loading_seconds == pytest.approx(
        466944 / 1e10, rel=1e-12)
    # nnz = N: 4096 entries of A → (4096·28 + 4096·16)/8 = 22528 bytes
    sparse = quantum_cost(n, d, 100.0, 1e-2, profile=get_profile("surface-code"), nnz=n)
    assert sparse.loading_seconds == pytest.approx(22528 / 1e10, rel=1e-12)


# ----------------------------------------------------------------------------- QuantumCost


def test_quantum_cost_to_dict_roundtrips_json():
    c = quantum_cost(1000, 10, 100.0, 1e-2, qlsa="dalzell", profile=get_profile("surface-code"))
    assert isinstance(c, QuantumCost)
    d = json.loads(json.dumps(c.to_dict()))
    assert d["qlsa"] == "dalzell" and d["profile"] == "surface-code"
    assert d["time_kind"] == "modeled"
    assert d["total_seconds"] == pytest.approx(c.total_seconds)
    assert d["code_distance"] == c.code_distance
    assert d["queries"] == pytest.approx(dalzell_queries(100.0, 1e-2))
    assert (d["n"], d["d"], d["kappa"], d["eps"], d["alpha"]) == (1000, 10, 100.0, 1e-2, 1.0)


def test_quantum_cost_alpha_passed_to_model():
    prof = get_profile("paper")
    a1 = quantum_cost(100, 5, 100.0, 1e-2, profile=prof, qlsa="dalzell")
    a3 = quantum_cost(100, 5, 100.0, 1e-2, profile=prof, qlsa="dalzell", alpha=3.0)
    assert a3.queries == pytest.approx(3 * a1.queries, rel=1e-12)
    assert a3.alpha == 3.0


@pytest.mark.parametrize(
    ("args", "kwargs", "param"),
    [
        ((0, 1, 10.0, 0.1), {}, "n"),
        ((10.5, 1, 10.0, 0.1), {}, "n"),
        ((10, 0, 10.0, 0.1), {}, "d"),
        ((10, 11, 10.0, 0.1), {}, "d"),
        ((10, 2, 0.9, 0.1), {}, "kappa"),
        ((10, 2, 10.0, 0.0), {}, "eps"),
        ((10, 2, 10.0, 1.0), {}, "eps"),
        ((10, 2, 10.0, 0.1), {"alpha": 0.0}, "alpha"),
        ((10, 2, 10.0, 0.1), {"readout": "bits"}, "readout"),
        ((10, 2, 10.0, 0.1), {"nnz": 21}, "nnz"),
        ((10, 2, 10.0, 0.1), {"nnz": 0}, "nnz"),
    ],
)
def test_quantum_cost_bad_inputs(args, kwargs, param):
    with pytest.raises(ValueError, match=f"^{param} must be"):
        quantum_cost(*args, profile=get_profile("surface-code"), **kwargs)


def test_quantum_cost_unknown_qlsa_lists_models():
    with pytest.raises(UnknownNameError, match="^qlsa must be one of jennings, "):
        quantum_cost(10, 2, 10.0, 0.1, qlsa="nope", profile=get_profile("surface-code"))


def test_quantum_cost_requires_profile_object():
    with pytest.raises(ValueError, match="profile must be a HardwareProfile"):
        quantum_cost(10, 2, 10.0, 0.1, profile="paper")


# ----------------------------------------------------------------------------- block encoding


def test_block_encoding_alpha():
    assert block_encoding_alpha(10, 0.5, 2.0) == pytest.approx(2.5)
    assert block_encoding_alpha(2, 0.1, 1.0) == 1.0  # clamped at 1
    # all-ones N×N matrix: d = N, max entry 1, ‖A‖₂ = N — the sparse-access encoding is tight
    assert block_encoding_alpha(500, 1.0, 500.0) == 1.0
    # 1-D Laplacian tridiag(−1, 2, −1): d = 3, max entry 2, ‖A‖₂ = 2 + 2cos(π/(N+1)) → 4, so the
    # QLSA sees α ≈ 6/4 = 1.5 times the condition number
    n = 1000
    assert block_encoding_alpha(3, 2.0, 2.0 + 2.0 * math.cos(math.pi / (n + 1))) == pytest.approx(
        1.5, rel=1e-5)
    with pytest.raises(ValueError, match="^d must be"):
        block_encoding_alpha(0, 1.0, 1.0)
    with pytest.raises(ValueError, match="^max_abs_entry must be"):
        block_encoding_alpha(3, 0.0, 1.0)
    with pytest.raises(ValueError, match="^spectral_norm must be"):
        block_encoding_alpha(3, 1.0, -1.0)


# ----------------------------------------------------------------------------- error budget


def test_matched_split_is_the_cheapest_split_of_the_target():
    from qnewton.quantum.error_budget import matched_split
    from qnewton.quantum.qlsa import qlsa_queries
    from qnewton.quantum.readout import readout_runs

    for n, kappa, target in [(16, 10.0, 1e-2), (1024, 1e3, 1e-2), (256, 50.0, 0.1)]:
        eps, delta = matched_split(target, n, "jennings", kappa, 1.0)
        assert eps + delta == pytest.approx(target, rel=1e-12) and 0 < eps < target

        def cost(e, total=target, n=n, kappa=kappa):
            return qlsa_queries("jennings", kappa, e, 1.0) * readout_runs(n, "vector", total - e)

        finest = min(cost(target * s / 1000) for s in range(1, 1000))
        assert cost(eps) <= 1.1 * finest  # the 8 candidate shares are within 10% of the best


def test_scheduler_matches_accuracy_only_for_vector_readout():
    from qnewton.scheduling import Scheduler, SchedulerConfig
    from qnewton.solvers import MachineRates
    from qnewton.system import SystemShape

    rates = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                              bandwidth_bytes_per_s=1e10)
    shape = SystemShape(n=512, nnz=512 * 512, d=512, kappa=100.0)
    profile = get_profile("surface-code")
    matched = Scheduler(SchedulerConfig(hardware=profile), rates=rates).decide_shape(shape, 1.0)
    budget = matched.quantum.error_budget
    # the vector the step receives has error eps = 1e-2 (plus the logical-fault budget)
    assert budget["eps_qlsa"] + budget["delta_readout"] == pytest.approx(1e-2)
    assert budget["eps_logical"] == profile.error_budget
    assert budget["total"] == pytest.approx(1e-2 + profile.error_budget)
    # unmatched: the old comparison, ε_QLSA = 1e-2 plus the profile's δ = 0.1 on top
    loose = Scheduler(SchedulerConfig(hardware=profile, match_accuracy=False),
                      rates=rates).decide_shape(shape, 1.0)
    assert loose.quantum.error_budget["delta_readout"] == profile.readout_error
    assert loose.quantum.total_seconds == quantum_cost(
        512, 512, 100.0, 1e-2, profile=profile).total_seconds
    # an 11% vector takes ~100× fewer tomography runs than a 1% one
    assert matched.quantum.runs > 50 * loose.quantum.runs
    # state readout (the paper's hypothesis) has no tomography to match
    paper = Scheduler(SchedulerConfig(hardware=get_profile("paper")),
                      rates=rates).decide_shape(shape, 1.0)
    assert paper.quantum.error_budget == {"eps_qlsa": 1e-2, "delta_readout": 0.0,
                                          "eps_logical": 0.0, "total": 1e-2}
    assert "PAPER'S HYPOTHESIS" in paper.quantum.profile_label


# ----------------------------------------------------------------------------- logical counts


def test_rotation_synthesis_cost_matches_the_qdk_estimators():
    from qnewton.quantum.logical_counts import t_per_rotation

    # ⌈0.53·log₂(R/ε_rot) + 5.3⌉: the qdk estimator reported numTsPerRotation = 17 for 1000
    # rotations with a third of a 1e-3 budget (0.53·log₂(3e6) + 5.3 = 16.7)
    assert t_per_rotation(1000, 1e-3 / 3) == 17
    assert t_per_rotation(0, 1e-3) == 0
    assert t_per_rotation(10**6, 1e-3 / 3) == math.ceil(0.53 * math.log2(3e9) + 5.3) == 22


def test_logical_counts_of_a_run():
    from qnewton.quantum.fault_tolerant import algorithmic_qubits, toffolis_per_query
    from qnewton.quantum.logical_counts import qlsa_logical_counts

    profile = get_profile("surface-code")
    counts = qlsa_logical_counts(1024, 1024, 5e4, profile)
    assert counts.ccz_count == math.ceil(toffolis_per_query(1024, 1024, profile) * 5e4)
    assert counts.num_qubits == algorithmic_qubits(1024, 1024, profile)
    assert counts.rotation_count == counts.rotation_depth == 50_000  # one phase per query
    assert counts.t_count == 4 * counts.ccz_count + counts.t_per_rotation * 50_000
    assert counts.qdk_logical_counts()["cczCount"] == counts.ccz_count
