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
    assert c.seconds_per_query == pytest.approx(c.toffolis_per_query * c.toffoli_seconds)


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
