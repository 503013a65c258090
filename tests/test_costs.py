"""Tests for qnewton.costs: QLSA query models, hardware profiles, classical time models."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnewton.costs import (
    ATTOSECOND,
    HARDWARE_PROFILES,
    QLSA_MODELS,
    HardwareProfile,
    MachineRates,
    QuantumCost,
    best_classical,
    block_encoding_alpha,
    calibrate,
    cg_iterations,
    cg_seconds,
    cholesky_seconds,
    classical_costs,
    code_distance,
    costa_queries,
    dalzell_queries,
    default_cache_dir,
    fault_tolerant_estimate,
    get_profile,
    hhl_queries,
    inverse_seconds,
    jennings_queries,
    logical_qubits,
    lu_seconds,
    profile_from_dict,
    qlsa_queries,
    qsvt_queries,
    quantum_cost,
    readout_runs,
    toffolis_per_query,
    woodbury_seconds,
)

RATES = MachineRates.user(1e9, gemm_flops_per_s=1e10, bandwidth_bytes_per_s=1e10)

# ----------------------------------------------------------------------------- QLSA models


@pytest.mark.parametrize(("kappa", "expected"), [(1e2, 5.69e4), (1e4, 8.61e6)])
def test_jennings_known_values(kappa, expected):
    q = qlsa_queries("jennings", kappa, 1e-2)
    assert q == pytest.approx(expected, rel=0.01)
    assert jennings_queries(kappa, 1e-2, 1.0) == q


def _raw_jennings(k, e, a):
    L = math.log(2 * k + 3)
    q_star = (
        (1741 * a * math.e / 500)
        * math.sqrt(k**2 + 1)
        * ((133 / 125 + 4 / (25 * k ** (1 / 3))) * math.pi * L + 1)
        + (351 / 50) * L**2 * (math.log(451 * L**2 / e) + 1)
        + a * k * math.log(32 / e)
    )
    return q_star / (0.39 - 0.201 * e)


def test_jennings_formula_transcription_at_a_point():
    # inside the region where the published formula is already monotone in eps
    assert jennings_queries(50.0, 1e-3, 2.0) == pytest.approx(_raw_jennings(50.0, 1e-3, 2.0))
    assert jennings_queries(1e2, 1e-2) == pytest.approx(_raw_jennings(1e2, 1e-2, 1.0), rel=1e-12)


def test_jennings_domain_clamping_is_conservative():
    # below kappa = sqrt(12) and above eps = 0.24 the model is evaluated at the domain edge
    edge = jennings_queries(math.sqrt(12), 1e-2)
    assert jennings_queries(1.0, 1e-2) == pytest.approx(edge)
    assert jennings_queries(2.0, 1e-2) == pytest.approx(edge)
    assert jennings_queries(100.0, 0.5) == pytest.approx(jennings_queries(100.0, 0.24))


def test_jennings_monotone_envelope():
    # the raw published expectation rises again as eps grows (1/(0.39-0.201 eps) factor) ...
    assert _raw_jennings(100.0, 0.2, 1.0) < _raw_jennings(100.0, 0.24, 1.0)
    assert _raw_jennings(1e4, 5e-3, 1.0) < _raw_jennings(1e4, 1e-2, 1.0)
    # ... the model returns the cheapest run meeting the target: min over eps' <= eps
    for k, e in [(100.0, 0.24), (1e4, 1e-2), (1e4, 0.1)]:
        grid = [e * 10 ** (-i / 200) for i in range(0, 1200)]
        best = min(_raw_jennings(k, x, 1.0) for x in grid)
        assert jennings_queries(k, e) == pytest.approx(best, rel=1e-6)
        assert jennings_queries(k, e) <= _raw_jennings(k, e, 1.0)
    assert jennings_queries(100.0, 0.2) >= jennings_queries(100.0, 0.24)


def test_dalzell_exact_arithmetic():
    assert dalzell_queries(1e4, 1e-2, 1.0) == pytest.approx(1e4 * (56 + 1.05 * math.log(100)))
    assert qlsa_queries("dalzell", 200.0, 1e-3, alpha=3.0) == pytest.approx(
        3.0 * 200.0 * (56 + 1.05 * math.log(1e3)), rel=1e-12
    )


def test_other_models_arithmetic():
    assert hhl_queries(10.0, 0.1, 2.0) == pytest.approx(400.0 / 0.1)
    assert qsvt_queries(100.0, 1e-2, 1.0) == pytest.approx(100.0 * math.log(1e4))
    assert costa_queries(10.0, 1e-2, 1.0) == pytest.approx(10.0 * (2305 + 2 * math.log(200)))


@pytest.mark.parametrize("alpha", [1.0, 2.5, 10.0])
@pytest.mark.parametrize("kappa", [5.0, 1e2, 1e4])
def test_release_variant_is_alpha_times_jennings(kappa, alpha):
    j = qlsa_queries("jennings", kappa, 1e-2, alpha)
    r = qlsa_queries("jennings-release", kappa, 1e-2, alpha)
    assert r == pytest.approx(alpha * j, rel=1e-12)
    if alpha == 1.0:
        assert r == j
    assert "bug" in QLSA_MODELS["jennings-release"].description


def test_registry_entries_are_documented():
    assert set(QLSA_MODELS) == {"jennings", "jennings-release", "dalzell", "costa", "hhl", "qsvt"}
    for name, model in QLSA_MODELS.items():
        assert model.name == name
        assert "arXiv" in model.source or "release" in model.source
        assert model.description
        assert model.queries(100.0, 1e-2, 1.0) == qlsa_queries(name, 100.0, 1e-2)
    with pytest.raises(TypeError):
        QLSA_MODELS["new"] = QLSA_MODELS["hhl"]  # read-only registry


def test_unknown_qlsa_lists_allowed_names():
    with pytest.raises(ValueError, match="qlsa must be one of.*dalzell.*jennings"):
        qlsa_queries("grover", 10.0, 0.1)


@pytest.mark.parametrize("name", sorted(QLSA_MODELS))
@settings(max_examples=40, deadline=None)
@given(
    k1=st.floats(1.0, 1e7),
    k2=st.floats(1.0, 1e7),
    e1=st.floats(1e-9, 0.99),
    e2=st.floats(1e-9, 0.99),
    alpha=st.floats(1.0, 50.0),
)
def test_queries_monotone(name, k1, k2, e1, e2, alpha):
    lo_k, hi_k = sorted((k1, k2))
    lo_e, hi_e = sorted((e1, e2))
    q = QLSA_MODELS[name].queries
    assert q(lo_k, hi_e, alpha) <= q(hi_k, hi_e, alpha) * (1 + 1e-12)
    assert q(lo_k, hi_e, alpha) <= q(lo_k, lo_e, alpha) * (1 + 1e-12)
    assert q(lo_k, lo_e, alpha) > 0


@pytest.mark.parametrize("name", sorted(QLSA_MODELS))
def test_queries_strictly_increasing_inside_domain(name):
    q = QLSA_MODELS[name].queries
    assert q(1e3, 1e-2, 1.0) > q(1e2, 1e-2, 1.0)
    assert q(1e2, 1e-4, 1.0) > q(1e2, 1e-2, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"kappa": 0.5, "eps": 0.1}, "kappa"),
        ({"kappa": float("nan"), "eps": 0.1}, "kappa"),
        ({"kappa": float("inf"), "eps": 0.1}, "kappa"),
        ({"kappa": 10.0, "eps": 0.0}, "eps"),
        ({"kappa": 10.0, "eps": 1.0}, "eps"),
        ({"kappa": 10.0, "eps": -0.1}, "eps"),
        ({"kappa": 10.0, "eps": 0.1, "alpha": 0.0}, "alpha"),
        ({"kappa": 10.0, "eps": 0.1, "alpha": -2.0}, "alpha"),
    ],
)
def test_qlsa_bad_inputs(kwargs, param):
    for name in QLSA_MODELS:
        with pytest.raises(ValueError, match=param):
            qlsa_queries(name, **kwargs)


def test_block_encoding_alpha():
    assert block_encoding_alpha(10, 0.5, 2.0) == pytest.approx(2.5)
    assert block_encoding_alpha(1, 1.0, 1.0) == 1.0
    assert block_encoding_alpha(2, 0.1, 1.0) == 1.0  # clamped at 1
    with pytest.raises(ValueError, match="d must"):
        block_encoding_alpha(0, 1.0, 1.0)
    with pytest.raises(ValueError, match="max_abs_entry"):
        block_encoding_alpha(3, 0.0, 1.0)
    with pytest.raises(ValueError, match="spectral_norm"):
        block_encoding_alpha(3, 1.0, -1.0)


# ----------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("n", [2, 3, 1000, 1024, 1025, 10**6])
def test_paper_profile_seconds_exact(n):
    prof = get_profile("paper")
    c = quantum_cost(n, 1, 1e3, 1e-2, profile=prof)
    q = qlsa_queries("jennings", 1e3, 1e-2)
    gates = math.ceil(math.log2(n))
    assert c.queries == q
    assert c.seconds_per_query == gates * 1e-9
    assert c.solve_seconds == pytest.approx(q * gates * 1e-9, rel=1e-12)
    assert c.runs == 1 and c.readout == "state"
    assert c.loading_seconds == 0.0
    assert c.total_seconds == c.solve_seconds
    assert c.code_distance is None and c.toffolis_per_query is None and c.logical_qubits is None


def test_attosecond_override():
    assert ATTOSECOND == 1e-18
    fast = get_profile("paper", gate_time_s=ATTOSECOND)
    assert fast.gate_time_s == 1e-18
    assert HARDWARE_PROFILES["paper"].gate_time_s == 1e-9  # preset untouched
    slow = quantum_cost(4096, 10, 100.0, 1e-2, profile=get_profile("paper"))
    quick = quantum_cost(4096, 10, 100.0, 1e-2, profile=fast)
    assert quick.total_seconds == pytest.approx(slow.total_seconds * 1e-9, rel=1e-12)
    assert quick.seconds_per_query == 12 * 1e-18


@pytest.mark.parametrize(
    ("name", "target"),
    [("surface-code", 35e-6), ("surface-code-optimistic", 18e-6), ("trapped-ion", 50e-3)],
)
@pytest.mark.parametrize("kappa", [1e2, 1e3, 1e4])
def test_toffoli_time_targets(name, target, kappa):
    c = quantum_cost(10**4, 100, kappa, 1e-2, profile=get_profile(name))
    assert target / 1.5 <= c.toffoli_seconds <= target * 1.5
    assert c.code_distance % 2 == 1
    assert c.seconds_per_query == pytest.approx(c.toffolis_per_query * c.toffoli_seconds)


def test_toffoli_time_formula():
    prof = get_profile("surface-code")
    est = fault_tolerant_estimate(10**4, 100, 1e5, prof)
    assert est.logical_cycle_seconds == pytest.approx((4 * 50e-9 + 2 * 100e-9) * est.code_distance)
    assert est.toffoli_seconds == pytest.approx(3 * est.logical_cycle_seconds)
    assert est.logical_cycles == pytest.approx(3 * est.toffolis_per_query * 1e5)
    d = est.code_distance

    # d is the smallest odd distance meeting the budget
    def err(dist):
        return 0.03 * (1e-3 / 1e-2) ** ((dist + 1) / 2) * est.logical_qubits * est.logical_cycles

    assert err(d) <= prof.error_budget < err(d - 2)


def test_toffolis_per_query_formula():
    prof = get_profile("surface-code")
    n, d = 10**4, 100
    w = 16 + 14
    expected = 2 * math.sqrt(n * d * w) + 2 * math.sqrt(n * d)
    expected += 2 * (2 * math.sqrt(n * 16) + 2 * math.sqrt(n))
    assert toffolis_per_query(n, d, prof) == pytest.approx(expected)
    assert logical_qubits(n, d, prof) > math.sqrt(n * d * w)


def test_code_distance_monotone():
    ps = [1e-5, 1e-4, 5e-4, 1e-3, 3e-3, 8e-3]
    ds = [code_distance(p, 1000, 1e10, 1e-3) for p in ps]
    assert ds == sorted(ds) and ds[0] < ds[-1]
    cycles = [1e6, 1e9, 1e12, 1e15]
    dc = [code_distance(1e-3, 1000, c, 1e-3) for c in cycles]
    assert dc == sorted(dc) and dc[0] < dc[-1]
    # problem size: bigger N and d -> more Toffolis and qubits -> never a smaller distance
    prof = get_profile("surface-code")
    sizes = [(10**2, 10), (10**4, 100), (10**6, 1000), (10**8, 10**4)]
    dist = [quantum_cost(n, d, 1e3, 1e-2, profile=prof).code_distance for n, d in sizes]
    assert dist == sorted(dist) and dist[0] < dist[-1]
    assert all(x % 2 == 1 for x in ds + dc + dist)


def test_code_distance_bad_inputs():
    with pytest.raises(ValueError, match="physical_error_rate"):
        code_distance(0.02, 10, 1e6, 1e-3)
    with pytest.raises(ValueError, match="logical_cycles"):
        code_distance(1e-3, 10, 0.0, 1e-3)
    with pytest.raises(ValueError, match="error_budget"):
        code_distance(1e-3, 10, 1e6, 1.5)


def test_vector_readout_much_more_expensive_than_state():
    prof = get_profile("surface-code")
    vec = quantum_cost(1000, 10, 100.0, 1e-2, profile=prof)
    state = quantum_cost(1000, 10, 100.0, 1e-2, profile=prof, readout="state")
    assert vec.readout == "vector" and state.readout == "state"
    assert vec.runs == math.ceil(1000 * math.log(1000) / 0.1**2)
    assert state.runs == 1
    assert vec.solve_seconds == pytest.approx(state.solve_seconds * vec.runs)
    assert vec.total_seconds > 1e5 * state.total_seconds
    paper_vec = quantum_cost(1000, 10, 100.0, 1e-2, profile=get_profile("paper"), readout="vector")
    assert paper_vec.runs == vec.runs
    assert readout_runs(1, "vector", 0.1) == 1
    tighter = get_profile("surface-code", readout_error=0.01)
    assert quantum_cost(1000, 10, 100.0, 1e-2, profile=tighter).runs > 99 * vec.runs


def test_loading_charged_only_where_configured():
    n, d = 4096, 32
    sc = quantum_cost(n, d, 100.0, 1e-2, profile=get_profile("surface-code"))
    expected = (n * d * (16 + 12) + n * 16) / 8 / 1e10
    assert sc.loading_seconds == pytest.approx(expected)
    assert sc.total_seconds == pytest.approx(sc.solve_seconds + sc.loading_seconds)
    no_load = get_profile("surface-code", charge_loading=False)
    assert quantum_cost(n, d, 100.0, 1e-2, profile=no_load).loading_seconds == 0.0
    assert quantum_cost(n, d, 100.0, 1e-2, profile=get_profile("paper")).loading_seconds == 0.0
    paper_load = get_profile("paper", charge_loading=True)
    assert quantum_cost(n, d, 100.0, 1e-2, profile=paper_load).loading_seconds == pytest.approx(
        expected
    )
    sparse = quantum_cost(n, d, 100.0, 1e-2, profile=get_profile("surface-code"), nnz=n)
    assert sparse.loading_seconds < sc.loading_seconds


def test_realistic_profiles_much_slower_than_paper():
    args = (10**4, 100, 1e3, 1e-2)
    paper = quantum_cost(*args, profile=get_profile("paper")).total_seconds
    sc = quantum_cost(*args, profile=get_profile("surface-code-optimistic")).total_seconds
    ion = quantum_cost(*args, profile=get_profile("trapped-ion")).total_seconds
    assert paper < sc < ion
    assert sc > 1e6 * paper


def test_quantum_cost_to_dict_roundtrips_json():
    c = quantum_cost(1000, 10, 100.0, 1e-2, qlsa="dalzell", profile=get_profile("surface-code"))
    assert isinstance(c, QuantumCost)
    d = json.loads(json.dumps(c.to_dict()))
    assert d["qlsa"] == "dalzell" and d["profile"] == "surface-code"
    assert d["time_kind"] == "modeled"
    assert d["total_seconds"] == pytest.approx(c.total_seconds)
    assert d["code_distance"] == c.code_distance
    assert d["queries"] == pytest.approx(dalzell_queries(100.0, 1e-2))


def test_quantum_cost_alpha_passed_to_model():
    prof = get_profile("paper")
    a1 = quantum_cost(100, 5, 100.0, 1e-2, profile=prof, qlsa="dalzell")
    a3 = quantum_cost(100, 5, 100.0, 1e-2, profile=prof, qlsa="dalzell", alpha=3.0)
    assert a3.queries == pytest.approx(3 * a1.queries)


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
        ((10, 2, 10.0, 0.1), {"qlsa": "nope"}, "qlsa"),
        ((10, 2, 10.0, 0.1), {"readout": "bits"}, "readout"),
        ((10, 2, 10.0, 0.1), {"nnz": 21}, "nnz"),
        ((10, 2, 10.0, 0.1), {"nnz": 0}, "nnz"),
    ],
)
def test_quantum_cost_bad_inputs(args, kwargs, param):
    with pytest.raises(ValueError, match=param):
        quantum_cost(*args, profile=get_profile("surface-code"), **kwargs)


def test_quantum_cost_requires_profile_object():
    with pytest.raises(ValueError, match="profile"):
        quantum_cost(10, 2, 10.0, 0.1, profile="paper")


def test_get_profile_errors():
    with pytest.raises(ValueError, match="profile must be one of.*paper.*surface-code"):
        get_profile("quantum-annealer")
    with pytest.raises(ValueError, match="gate_speed.*allowed fields.*gate_time_s"):
        get_profile("paper", gate_speed=1e-18)
    with pytest.raises(ValueError, match="gate_time_s"):
        get_profile("paper", gate_time_s=0.0)
    with pytest.raises(ValueError, match="physical_error_rate"):
        get_profile("surface-code", physical_error_rate=0.02)
    with pytest.raises(ValueError, match="default_readout"):
        get_profile("surface-code", default_readout="magic")
    with pytest.raises(ValueError, match="readout_error"):
        get_profile("surface-code", readout_error=1.5)
    with pytest.raises(ValueError, match="bits_per_entry"):
        get_profile("surface-code", bits_per_entry=0)
    with pytest.raises(ValueError, match="kind"):
        get_profile("surface-code", kind="analog")


def test_presets():
    assert set(HARDWARE_PROFILES) >= {
        "paper",
        "surface-code",
        "surface-code-optimistic",
        "trapped-ion",
    }
    paper = HARDWARE_PROFILES["paper"]
    assert paper.kind == "gate-count" and paper.default_readout == "state"
    assert not paper.charge_loading
    sc = HARDWARE_PROFILES["surface-code"]
    assert (sc.t_2q_s, sc.t_meas_s, sc.physical_error_rate) == (50e-9, 100e-9, 1e-3)
    assert sc.default_readout == "vector" and sc.charge_loading
    assert HARDWARE_PROFILES["surface-code-optimistic"].physical_error_rate == 1e-4
    assert HARDWARE_PROFILES["trapped-ion"].t_2q_s == 100e-6
    for name, prof in HARDWARE_PROFILES.items():
        assert prof.name == name and prof.description
        assert prof.loading_bandwidth_bytes_per_s == 1e10


def test_profile_from_dict():
    custom = profile_from_dict(
        {"base": "surface-code", "name": "my-sc", "physical_error_rate": 5e-4}
    )
    assert custom.name == "my-sc" and custom.physical_error_rate == 5e-4
    assert custom.t_2q_s == 50e-9
    full = profile_from_dict(
        {"name": "fast", "kind": "gate-count", "gate_time_s": 1e-12, "readout_error": 0.05}
    )
    assert full == HardwareProfile(
        name="fast", kind="gate-count", gate_time_s=1e-12, readout_error=0.05
    )
    assert profile_from_dict(json.loads(json.dumps(custom.to_dict()))) == custom
    with pytest.raises(ValueError, match="kind"):
        profile_from_dict({"name": "x"})
    with pytest.raises(ValueError, match="colour"):
        profile_from_dict({"name": "x", "kind": "gate-count", "colour": "red"})
    with pytest.raises(ValueError, match="profile must be one of"):
        profile_from_dict({"base": "nope"})
    with pytest.raises(ValueError, match="t_2q_s"):
        profile_from_dict({"name": "ft", "kind": "fault-tolerant"})


# ----------------------------------------------------------------------------- classical


def test_classical_formulas_with_user_rates():
    r = MachineRates.user(1e9)
    assert r.source == "user" and r.gemm_flops_per_s == 1e9
    assert cholesky_seconds(1000, r) == pytest.approx((1e9 / 3 + 2e6) / 1e9, rel=1e-12)
    assert lu_seconds(1000, r) == pytest.approx((2e9 / 3 + 2e6) / 1e9, rel=1e-12)
    assert inverse_seconds(1000, r) == pytest.approx((2e9 + 2e6) / 1e9, rel=1e-12)
    assert 5 < inverse_seconds(4000, r) / cholesky_seconds(4000, r) < 7


def test_cg_model():
    assert cg_iterations(100.0, 1e-2) == math.ceil(0.5 * 10 * math.log(200))
    assert cg_iterations(1.0, 0.9) == 1
    n = 1000
    iters = cg_iterations(100.0, 1e-2)
    dense_bytes = 8 * n * n + 64 * n
    assert cg_seconds(n, n * n, 100.0, 1e-2, RATES) == pytest.approx(iters * dense_bytes / 1e10)
    sparse = cg_seconds(n, 10 * n, 100.0, 1e-2, RATES)
    assert sparse == pytest.approx(iters * (12 * 10 * n + 64 * n + 4 * (n + 1)) / 1e10)
    assert cg_seconds(n, n * n, 1e4, 1e-2, RATES) > cg_seconds(n, n * n, 1e2, 1e-2, RATES)
    compute_bound = MachineRates.user(1e6, gemm_flops_per_s=1e6, bandwidth_bytes_per_s=1e15)
    flops = 2 * n * n + 10 * n
    assert cg_seconds(n, n * n, 100.0, 1e-2, compute_bound) == pytest.approx(iters * flops / 1e6)


def test_woodbury_model_and_advantage():
    n, b = 10**4, 64
    expected = 2 * n * b * b / 1e10 + (b**3 / 3 + 2 * b * b) / 1e9 + 16 * n * b / 1e10
    assert woodbury_seconds(n, b, RATES) == pytest.approx(expected)
    assert woodbury_seconds(n, b, RATES) < 1e-3 * cholesky_seconds(n, RATES)


def test_classical_costs_and_best():
    costs = classical_costs(2000, kappa=1e6, eps=1e-6, rates=RATES)
    assert set(costs) == {"cholesky", "lu", "inverse", "cg"}
    assert costs["cg"] == cg_seconds(2000, 2000**2, 1e6, 1e-6, RATES)
    assert best_classical(costs) == ("cholesky", costs["cholesky"])
    easy = classical_costs(2000, kappa=4.0, eps=1e-2, rates=RATES)
    assert best_classical(easy)[0] == "cg"
    with_rank = classical_costs(2000, kappa=1e6, eps=1e-6, rank=32, rates=RATES)
    assert set(with_rank) == {"cholesky", "lu", "inverse", "cg", "woodbury"}
    assert best_classical(with_rank)[0] == "woodbury"
    assert best_classical({"inverse": 1.0, "lu": 2.0}) == ("inverse", 1.0)
    with pytest.raises(ValueError, match="costs"):
        best_classical({})


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: cholesky_seconds(0, RATES), "n"),
        (lambda: lu_seconds(-1, RATES), "n"),
        (lambda: inverse_seconds(2.5, RATES), "n"),
        (lambda: cg_seconds(10, 0, 10.0, 0.1, RATES), "nnz"),
        (lambda: cg_seconds(10, 101, 10.0, 0.1, RATES), "nnz"),
        (lambda: cg_seconds(10, 10, 0.5, 0.1, RATES), "kappa"),
        (lambda: cg_seconds(10, 10, 10.0, 2.0, RATES), "eps"),
        (lambda: woodbury_seconds(10, 0, RATES), "rank"),
        (lambda: cholesky_seconds(10, "fast"), "rates"),
        (lambda: MachineRates.user(0.0), "dense_flops_per_s"),
        (lambda: MachineRates.user(1e9, bandwidth_bytes_per_s=-1.0), "bandwidth_bytes_per_s"),
        (lambda: MachineRates(1e9, 1e9, 1e9, source="guess"), "source"),
        (lambda: MachineRates.from_dict({"dense_flops_per_s": 1.0, "x": 2}), "x"),
        (lambda: MachineRates.from_dict({"dense_flops_per_s": 1.0}), "MachineRates"),
    ],
)
def test_classical_bad_inputs(call, param):
    with pytest.raises(ValueError, match=param):
        call()


def test_machine_rates_roundtrip():
    d = json.loads(json.dumps(RATES.to_dict()))
    assert MachineRates.from_dict(d) == RATES


# ----------------------------------------------------------------------------- calibration


def _cache_files(path):
    return sorted(p for p in path.iterdir() if p.suffix == ".json")


def test_calibrate_writes_and_rereads_cache(tmp_path):
    import torch

    first = calibrate(tmp_path)
    assert first.source == "calibrated"
    assert first.threads == torch.get_num_threads()
    assert first.torch_version == str(torch.__version__)
    for rate in (first.dense_flops_per_s, first.gemm_flops_per_s, first.bandwidth_bytes_per_s):
        assert 1e6 < rate < 1e15
    files = _cache_files(tmp_path)
    assert len(files) == 1
    assert json.loads(files[0].read_text())["dense_flops_per_s"] == first.dense_flops_per_s

    second = calibrate(tmp_path)
    assert second.source == "cache"
    assert second.dense_flops_per_s == first.dense_flops_per_s
    assert second.measured_at == first.measured_at

    forced = calibrate(tmp_path, force=True)
    assert forced.source == "calibrated"


def test_calibrate_recovers_from_corrupt_cache(tmp_path):
    calibrate(tmp_path)
    (path,) = _cache_files(tmp_path)
    for garbage in ("{not json", json.dumps([1, 2]), json.dumps({"dense_flops_per_s": -1})):
        path.write_text(garbage)
        rates = calibrate(tmp_path)
        assert rates.source == "calibrated"
        assert MachineRates.from_dict(json.loads(path.read_text())) == rates


def test_calibrate_ignores_mismatching_cache_entry(tmp_path):
    first = calibrate(tmp_path)
    (path,) = _cache_files(tmp_path)
    stale = dict(first.to_dict(), threads=first.threads + 7, dense_flops_per_s=1.0)
    path.write_text(json.dumps(stale))
    again = calibrate(tmp_path)
    assert again.source == "calibrated" and again.dense_flops_per_s != 1.0


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("QNEWTON_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("QNEWTON_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "qnewton")


def test_calibrate_unwritable_cache_does_not_crash(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rates = calibrate(blocker / "sub")  # cannot create a directory under a file
    assert rates.source == "calibrated"


def test_factor_form_charges_dense_solvers_for_forming_the_matrix():
    rates = MachineRates.user(dense_flops_per_s=1e9, gemm_flops_per_s=2e9,
                              bandwidth_bytes_per_s=1e10)
    dense = classical_costs(1000, kappa=10.0, eps=1e-6, rates=rates)
    factor = classical_costs(1000, kappa=10.0, eps=1e-6, rank=50, rates=rates)
    form = 2.0 * 1000**2 * 50 / 2e9 + 16.0 * 1000**2 / 1e10
    for name in ("cholesky", "lu", "inverse"):
        assert factor[name] == pytest.approx(dense[name] + form)
    assert factor["cg"] == dense["cg"]
    assert "woodbury" in factor and "woodbury" not in dense
