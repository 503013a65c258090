"""The QSVT-output QLSA backends (polynomial, circuit) against dense ground truth
(docs/method.md §4.11)."""

import math

import numpy as np
import pytest
import torch

from qnewton.curvature import FactorBlock
from qnewton.quantum.backends import QLSA_BACKENDS, CircuitLimitError
from qnewton.quantum.backends.inversion import (
    amplification_runs,
    grid_kappa,
    inverse_polynomial,
    spectral_bounds,
)
from qnewton.quantum.backends.phases import qsp_value, symmetric_phases
from qnewton.solvers import relative_error
from qnewton.system import LinearSystem

POLY = QLSA_BACKENDS["polynomial"]


def fisher_system(n=16, m=8, lam=0.1, seed=0):
    """A regularized empirical-Fisher block A = FᵀF/m + λI (PSD plus a shift)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(m, n, generator=g, dtype=torch.float64)
    return LinearSystem(block=FactorBlock("w", "fisher", f, scale=1.0 / m), shift=lam, reg=lam,
                        d=n, nnz=n * n)


def rhs(n, seed=1):
    return torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def exact_p_of_a(system, poly, alpha, b_hat):
    w, v = torch.linalg.eigh(system.to_dense())
    return v @ (torch.from_numpy(poly(w.numpy() / alpha)) * (v.T @ b_hat))


@pytest.mark.parametrize("kappa,eps", [(3.0, 0.1), (20.0, 1e-2), (150.0, 1e-3)])
def test_inverse_polynomial_is_bounded_and_approximates_inverse(kappa, eps):
    poly = inverse_polynomial(kappa, eps)
    assert poly.degree % 2 == 1 and np.all(poly.coefficients[::2] == 0)
    x = np.linspace(-1, 1, 40001)
    assert np.max(np.abs(poly(x))) <= 1.0
    inside = np.linspace(1 / kappa, 1, 20001)
    rel = np.max(np.abs(poly(inside) * inside / poly.scale - 1))
    assert rel <= poly.bound <= 0.75 * eps + 1e-15
    # the documented relation to the qsvt model: D within 0.7–2 × κ·ln(κ/ε)
    assert 0.7 <= poly.degree / poly.qsvt_formula <= 2.0


def test_grid_kappa_rounds_up_by_at_most_one_grid_step():
    for k in (1.0, 1.3, 17.0, 64.0, 1234.5):
        g = grid_kappa(k)
        assert k <= g <= k * 2 ** (1 / 8) * (1 + 1e-12)
    assert grid_kappa(64.0) == pytest.approx(64.0)


@pytest.mark.parametrize("n", [4, 16, 40])
def test_polynomial_state_is_exact_p_of_a_b(n):
    system = fisher_system(n=n, seed=n)
    b = rhs(n)
    result = POLY.solve(system, b, eps=1e-2)
    q = result.qlsa
    bounds = spectral_bounds(system)
    poly = inverse_polynomial(q["kappa_eff"], 1e-2)
    b_hat = b / torch.linalg.vector_norm(b)
    want = exact_p_of_a(system, poly, bounds.alpha, b_hat)
    state = result.x / torch.linalg.vector_norm(result.x)
    assert torch.allclose(state, want / torch.linalg.vector_norm(want), atol=1e-10, rtol=0)
    # success probability is ‖p(A/α) b̂‖², and x̃ = ‖b‖√P/(sα)·state = p(A/α)b/(sα)
    assert q["success_probability"] == pytest.approx(float(want @ want), rel=1e-10)
    scaled = want * torch.linalg.vector_norm(b) / (poly.scale * bounds.alpha)
    assert torch.allclose(result.x, scaled, rtol=1e-10, atol=0)
    assert q["queries"] == q["degree"] * q["amplification"]
    assert q["kappa_eff"] >= bounds.kappa_eff and q["lambda_lower_source"] == "conditioning"


@pytest.mark.parametrize("eps", [1e-1, 1e-2, 1e-3])
def test_polynomial_error_is_below_eps_and_deterministic(eps):
    system = fisher_system(n=24, seed=5)
    b = rhs(24, seed=2)
    exact = torch.linalg.solve(system.to_dense(), b)
    result = POLY.solve(system, b, eps=eps, seed=1)
    err = relative_error(result.x, exact)
    assert err <= 0.75 * eps
    assert result.qlsa["error"] == pytest.approx(err, rel=1e-9)
    assert result.qlsa["norm_error"] <= err + 1e-15
    again = POLY.solve(system, b, eps=eps, seed=2)  # no shots: seed-independent
    assert torch.equal(result.x, again.x)


def test_shot_noise_norm_is_unbiased_within_its_standard_error():
    system = fisher_system(n=12, lam=1.0, seed=3)
    b = rhs(12, seed=3)
    ideal = POLY.solve(system, b, eps=1e-2)
    prob, shots, draws = ideal.qlsa["success_probability"], 4000, 40
    estimates = np.array([POLY.solve(system, b, eps=1e-2, shots=shots, seed=s)
                          .qlsa["success_probability_estimate"] for s in range(draws)])
    se = math.sqrt(prob * (1 - prob) / shots / draws)
    assert abs(estimates.mean() - prob) < 4 * se
    norms = [float(torch.linalg.vector_norm(POLY.solve(system, b, eps=1e-2, shots=shots,
                                                       seed=s).x)) for s in range(3)]
    ideal_norm = float(torch.linalg.vector_norm(ideal.x))
    assert all(n != ideal_norm for n in norms)  # the norm carries the shot noise


def test_amplification_runs():
    assert amplification_runs(0.9) == 1
    assert amplification_runs(0.25) == 2 * math.floor(math.pi / (4 * math.asin(0.5))) + 1
    p = 1e-4  # ~ (π/4)/√P rounds, two circuit applications each
    assert amplification_runs(p) == pytest.approx(math.pi / 2 / math.sqrt(p), rel=0.02)


def test_symmetric_phases_realize_the_polynomial_in_the_real_part():
    poly = inverse_polynomial(10.0, 1e-2)
    phases = symmetric_phases(poly.coefficients)
    assert phases.size == poly.degree + 1
    x = np.linspace(-1, 1, 1001)
    assert np.max(np.abs(qsp_value(phases, x).real - poly(x))) < 1e-12


def test_polynomial_backend_refuses_bad_input():
    system = fisher_system(n=8)
    with pytest.raises(ValueError, match="eps must be a finite number > 0 and < 1"):
        POLY.solve(system, rhs(8), eps=0.0)
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        POLY.solve(system, rhs(8), eps=0.1, shots=0)
    with pytest.raises(ValueError, match=r"b must have shape \(8,\)"):
        POLY.solve(system, rhs(9), eps=0.1)


def test_circuit_refuses_blocks_above_its_limit():
    circuit = QLSA_BACKENDS["circuit"]
    system = fisher_system(n=circuit.max_n + 1)
    with pytest.raises(CircuitLimitError, match=f"up to N = {circuit.max_n}.*'polynomial'"):
        circuit.solve(system, rhs(system.n), eps=0.1)


@pytest.mark.parametrize("n,lam", [(4, 0.3), (8, 0.2), (16, 0.1), (6, 0.2)])
def test_circuit_matches_polynomial(n, lam):
    pytest.importorskip("pennylane")
    pytest.importorskip("pennylane_lightning")
    system = fisher_system(n=n, lam=lam, seed=n)
    b = rhs(n, seed=n)
    poly = POLY.solve(system, b, eps=0.05)
    circ = QLSA_BACKENDS["circuit"].solve(system, b, eps=0.05)
    assert circ.solver == "qlsa-circuit"
    assert relative_error(circ.x, poly.x) < 1e-8
    assert circ.qlsa["success_probability"] == pytest.approx(
        poly.qlsa["success_probability"], rel=1e-8)
    assert circ.qlsa["degree"] == poly.qlsa["degree"]


def test_block_encoding_is_pennylanes_when_it_does_not_rescale():
    qml = pytest.importorskip("pennylane")
    from qnewton.quantum.backends.circuit import block_encoding

    rng = np.random.default_rng(0)
    m = rng.standard_normal((4, 4))
    a = m @ m.T + np.eye(4)
    a /= np.sqrt(np.abs(a @ a.T).sum(axis=1).max())  # BlockEncode's own normalization
    ours = block_encoding(a)
    assert np.allclose(ours, qml.BlockEncode(a, wires=[0, 1, 2]).matrix(), atol=1e-12)
    assert np.allclose(ours @ ours.T, np.eye(8), atol=1e-12)


def test_scheduler_records_what_the_polynomial_backend_measured():
    from qnewton.quantum import get_profile
    from qnewton.scheduling import Scheduler, SchedulerConfig
    from qnewton.solvers import MachineRates

    rates = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                              bandwidth_bytes_per_s=1e10)
    sched = Scheduler(SchedulerConfig(hardware=get_profile("paper"), policy="quantum",
                                      qlsa="qsvt", qlsa_backend="polynomial", eps=0.05),
                      rates=rates)
    system = fisher_system(n=10, lam=0.5, seed=2)
    b = rhs(10)
    analysis = sched.analyse(system)
    decision = sched.decide(system, analysis)
    result = sched.run(system, b, decision)
    record = sched.record(step=0, block="w", system=system, analysis=analysis,
                          decision=decision, result=result).to_dict()
    assert record["choice"] == "quantum" and record["solver"] == "qlsa-polynomial"
    assert record["qlsa_backend"] == "polynomial"
    assert record["qlsa_degree"] == result.qlsa["degree"]
    assert record["qlsa_queries"] == result.qlsa["queries"]
    assert record["qlsa_degree_formula"] == pytest.approx(result.qlsa["qsvt_formula"])
    assert 0 < record["success_probability"] <= 1
    assert record["norm_error"] <= record["qlsa_error"] <= 0.75 * 0.05


def test_validate_qlsa_command_prints_the_table_and_writes_json(tmp_path, capsys):
    import json

    from qnewton.cli import main

    out = tmp_path / "v.json"
    assert main(["validate-qlsa", "--sizes", "4,6", "--kappas", "5", "--eps", "0.1",
                 "--backends", "polynomial,emulated", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| N | κ | ε | κ_eff | degree D" in text and "measured" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["n"] for r in rows] == [4, 6]
    for r in rows:
        assert r["polynomial_error_over_eps"] <= 0.75
        assert r["emulated_error_over_eps"] == pytest.approx(1.0, rel=1e-9)
        assert r["degree"] == r["queries"] / r["amplification"]
    assert main(["validate-qlsa", "--sizes", "4", "--backends", "magic"]) == 2
    assert "backends must be among polynomial, circuit, emulated" in capsys.readouterr().err


def test_training_with_the_polynomial_backend_records_success_probabilities(tmp_path, capsys):
    import json

    from qnewton.cli import main

    args = ["train", "--task", "digits", "--tiny", "--max-steps", "2", "--batch-size", "64",
            "--no-progress", "--policy", "quantum", "--reg", "1", "--qlsa-backend",
            "polynomial", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in (tmp_path / "run" / "solves.jsonl").open()]
    quantum = [r for r in rows if r["choice"] == "quantum"]
    assert quantum and all(r["qlsa_backend"] == "polynomial" for r in quantum)
    assert all(0 < r["success_probability"] <= 1 and r["qlsa_degree"] >= 1 for r in quantum)
    assert main(["report", str(tmp_path / "run")]) == 0
    html = (tmp_path / "run" / "report.html").read_text()
    assert "QSVT outputs" in html and "median P" in html


def test_qsvt_model_bounds_the_polynomial_backends_measured_queries():
    # The qsvt model is degree × amplification rounds at the worst-case success amplitude. On
    # random right-hand sides the backend's measured queries (its degree × the rounds its own P
    # needs) lie between the degree-only count (the old model, 4–600× low here) and the model.
    from qnewton.quantum import qsvt_queries
    from qnewton.quantum.qlsa.qsvt import (
        amplification_rounds,
        inversion_degree,
        worst_case_amplitude,
    )
    for n, lam, seed in [(8, 0.2, 1), (16, 0.1, 2), (32, 0.02, 4)]:
        system = fisher_system(n=n, lam=lam, seed=seed)
        out = POLY.solve(system, rhs(n, seed=seed), eps=1e-2).qlsa
        kappa = out["kappa_eff"]
        assert inversion_degree(kappa, 1e-2) < out["queries"] <= qsvt_queries(kappa, 1e-2)
        assert out["amplification"] <= amplification_rounds(worst_case_amplitude(kappa, 1e-2))
    # b̂ along A's top eigenvector is the worst case: p(λ/α) ≈ s·α/λ_max there, so the backend
    # needs the model's rounds scaled by λ_max/α (exactly the worst case when α = λ_max)
    system = fisher_system(n=16, lam=0.1, seed=2)
    w, v = torch.linalg.eigh(system.to_dense())
    out = POLY.solve(system, v[:, -1], eps=1e-2).qlsa
    worst = amplification_rounds(worst_case_amplitude(out["kappa_eff"], 1e-2))
    assert out["amplification"] == pytest.approx(worst * float(w[-1]) / out["alpha"], abs=3)


@pytest.mark.parametrize("factor", [2.0, 10.0])
def test_a_kappa_bound_too_small_is_detected_and_raised(factor):
    # conditioning hands the backend a λ_min bound `factor`× too large (κ `factor`× too small)
    from qnewton.quantum.backends.polynomial import kappa_check_residual

    honest = fisher_system(n=24, lam=0.02, seed=7)
    lam_min = float(torch.linalg.eigvalsh(honest.to_dense())[0])
    wrong = fisher_system(n=24, lam=0.02, seed=7)
    wrong.min_eig_bound = factor * lam_min
    b = rhs(24, seed=4)
    exact = torch.linalg.solve(honest.to_dense(), b)
    bounds = spectral_bounds(wrong)
    given = grid_kappa(bounds.kappa_eff)
    # the polynomial for the given κ misses A's smallest eigenvalues: its residual shows it
    poly = inverse_polynomial(given, 1e-2)
    b_hat = b / torch.linalg.vector_norm(b)
    out = POLY.apply(wrong, bounds, poly, b_hat)
    assert kappa_check_residual(wrong, bounds.alpha, poly, out, b_hat) > 3 * poly.bound
    # the backend detects it, doubles κ_eff until the check passes, and meets ε
    result = POLY.solve(wrong, b, eps=1e-2)
    q = result.qlsa
    assert q["kappa_check"] == "raised" and q["kappa_eff_given"] == given
    assert q["kappa_eff"] >= bounds.alpha / lam_min / 2 ** (1 / 8)
    assert q["kappa_check_residual"] <= inverse_polynomial(q["kappa_eff"], 1e-2).bound
    assert relative_error(result.x, exact) <= 0.75e-2
    assert q["queries"] > q["degree"] * q["amplification"]  # the failed attempts are counted
    # an honest bound passes at once
    assert POLY.solve(honest, b, eps=1e-2).qlsa["kappa_check"] == "passed"


def test_a_kappa_bound_beyond_repair_raises():
    from qnewton.quantum.backends import polynomial
    from qnewton.solvers.base import SolveError

    system = fisher_system(n=16, lam=1e-3, seed=8)
    system.min_eig_bound = 1e4 * float(torch.linalg.eigvalsh(system.to_dense())[0])
    old = polynomial.MAX_KAPPA_DOUBLINGS
    polynomial.MAX_KAPPA_DOUBLINGS = 2
    try:
        with pytest.raises(SolveError, match="κ bound given to the QLSA is wrong"):
            POLY.solve(system, rhs(16), eps=1e-2)
    finally:
        polynomial.MAX_KAPPA_DOUBLINGS = old


@pytest.mark.parametrize("backend", ["polynomial", "circuit"])
def test_reference_solve_is_a_diagnostic_not_training_time(tmp_path, capsys, monkeypatch, backend):
    # Each QSVT-output solve runs a classical reference solve for its error figures. Made to
    # take 50 ms here, it must land in diagnostic_seconds and stay out of the measured solve
    # phase, hence out of total_seconds.
    import json
    import time

    from qnewton.cli import main
    from qnewton.quantum.backends import polynomial

    if backend == "circuit":
        pytest.importorskip("pennylane")
        pytest.importorskip("pennylane_lightning")
    original = polynomial.reference_errors

    def slow_reference(system, b, x):
        time.sleep(0.05)
        return original(system, b, x)

    monkeypatch.setattr(polynomial, "reference_errors", slow_reference)
    out = tmp_path / "run"
    args = ["train", "--task", "digits", "--tiny", "--max-steps", "1", "--batch-size", "32",
            "--no-progress", "--policy", "quantum", "--reg", "1", "--qlsa-backend", backend,
            "--out", str(out)]
    if backend == "circuit":  # the tiny model's 512-parameter block is above the circuit limit
        from qnewton.quantum.backends import QLSABackendFallbackWarning
        with pytest.warns(QLSABackendFallbackWarning, match="take the 'polynomial' backend"):
            assert main(args) == 0
    else:
        assert main(args) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in (out / "solves.jsonl").open()]
    slowed = [r for r in rows if r["choice"] == "quantum" and r["qlsa_backend"] != "emulated"]
    assert slowed and all(r["reference_seconds"] >= 0.05 for r in slowed)
    summary = json.loads((out / "summary.json").read_text())
    totals = summary.get("totals", summary)
    booked = sum(r["reference_seconds"] for r in slowed)
    assert totals["diagnostic_seconds"] >= booked
    # what the solve phase adds to total_seconds (measured − emulation) holds no reference solve
    solve_in_total = totals["measured_by_phase"]["solve"] - totals["emulation_seconds"]
    assert solve_in_total < 0.05 * len(slowed)


def test_circuit_blocks_above_its_limit_take_the_polynomial_backend(monkeypatch):
    import warnings

    from qnewton.quantum import get_profile
    from qnewton.quantum.backends import QLSABackendFallbackWarning
    from qnewton.scheduling import Scheduler, SchedulerConfig
    from qnewton.solvers import MachineRates

    pytest.importorskip("pennylane")
    pytest.importorskip("pennylane_lightning")
    monkeypatch.setattr(QLSA_BACKENDS["circuit"], "max_n", 8)
    rates = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                              bandwidth_bytes_per_s=1e10)
    sched = Scheduler(SchedulerConfig(hardware=get_profile("paper"), policy="quantum",
                                      qlsa_backend="circuit", eps=0.05), rates=rates)
    records = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in (6, 12, 16):
            system = fisher_system(n=n, lam=0.3, seed=n)
            b = rhs(n, seed=n)
            analysis = sched.analyse(system)
            decision = sched.decide(system, analysis)
            result = sched.run(system, b, decision)
            records.append(sched.record(step=0, block=f"b{n}", system=system,
                                        analysis=analysis, decision=decision, result=result))
            # same ideal output as the polynomial backend
            assert relative_error(result.x, POLY.solve(system, b, eps=0.05).x) < 1e-8
    fallback_warnings = [w for w in caught if issubclass(w.category, QLSABackendFallbackWarning)]
    assert len(fallback_warnings) == 1 and "N = 12" in str(fallback_warnings[0].message)
    assert [r.qlsa_backend for r in records] == ["circuit", "polynomial", "polynomial"]
    assert [r.qlsa_backend_fallback for r in records] == [None, "polynomial", "polynomial"]
    assert [r.solver for r in records] == ["qlsa-circuit", "qlsa-polynomial", "qlsa-polynomial"]
