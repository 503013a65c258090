"""The classical solvers' time models: flop counts from the textbook, iteration bounds checked
against real CG runs, the factor-form charges, and MachineRates."""

from __future__ import annotations

import json
import math

import pytest
import torch

from qnewton.curvature import DenseBlock
from qnewton.solvers import SOLVERS, MachineRates, cg_iterations, predict_classical
from qnewton.system import LinearSystem, SystemShape

RATES = MachineRates.user(dense_flops_per_s=1e9, gemm_flops_per_s=1e10,
                          bandwidth_bytes_per_s=1e10)


def dense_shape(n: int, kappa: float = 10.0, nnz: int | None = None) -> SystemShape:
    return SystemShape(n=n, nnz=n * n if nnz is None else nnz, d=n, kappa=kappa)


def test_dense_flop_counts_are_the_textbook_ones():
    # Golub & Van Loan, Matrix Computations (4th ed.): Cholesky n³/3 (Alg. 4.2.1), LU with
    # partial pivoting 2n³/3 (§3.4), inverse via LU 2n³; each plus 2n² for the triangular solves.
    n = 1000
    assert SOLVERS["cholesky"].flops(n) == n**3 / 3 + 2 * n**2
    assert SOLVERS["lu"].flops(n) == 2 * n**3 / 3 + 2 * n**2
    assert SOLVERS["inverse"].flops(n) == 2 * n**3 + 2 * n**2
    seconds = SOLVERS["cholesky"].predict_seconds(dense_shape(n), RATES, 1e-6)
    assert seconds == pytest.approx((n**3 / 3 + 2 * n**2) / 1e9, rel=1e-12)
    ratio = (SOLVERS["inverse"].predict_seconds(dense_shape(4000), RATES, 1e-6)
             / SOLVERS["cholesky"].predict_seconds(dense_shape(4000), RATES, 1e-6))
    assert 5 < ratio < 7  # what the release pays for torch.inverse instead of Cholesky


def spd_with_kappa(n: int, kappa: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    eig = torch.logspace(0, math.log10(kappa), n, dtype=torch.float64)
    return (q * eig) @ q.T


@pytest.mark.parametrize("kappa", [10.0, 1e3, 1e5])
def test_cg_iteration_bound_holds_for_real_cg_runs(kappa):
    # ‖e_k‖_A ≤ 2((√κ−1)/(√κ+1))^k ‖e_0‖_A (Golub & Van Loan Thm 11.3.3) gives k ≤ ½√κ·ln(2/ε)
    # for an A-norm reduction by ε; a real CG run to a residual tolerance must stay close to it.
    n, eps = 200, 1e-6
    a = spd_with_kappa(n, kappa)
    system = LinearSystem(DenseBlock("a", "hessian", a), shift=0.0, reg=0.0, dense=a, d=n,
                          nnz=n * n)
    b = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    run = SOLVERS["cg"].solve(system, b, rtol=eps)
    bound = cg_iterations(kappa, eps)
    # residual vs A-norm stopping: a small constant apart; in floating point CG may need more
    # than n iterations (lost orthogonality), which the bound still covers
    assert 0.2 * min(n, bound) <= run.iterations <= 1.3 * bound
    assert cg_iterations(1.0, 0.9) == 1
    assert cg_iterations(100.0, 1e-2) == math.ceil(0.5 * 10 * math.log(200))


def test_cg_model_is_bandwidth_or_compute_bound():
    n = 1000
    iters = cg_iterations(100.0, 1e-2)
    cg = SOLVERS["cg"]
    dense_bytes = 8 * n * n + 64 * n
    assert cg.predict_seconds(dense_shape(n, 100.0), RATES, 1e-2) == pytest.approx(
        iters * dense_bytes / 1e10)
    sparse = cg.predict_seconds(dense_shape(n, 100.0, nnz=10 * n), RATES, 1e-2)
    assert sparse == pytest.approx(iters * (12 * 10 * n + 64 * n + 4 * (n + 1)) / 1e10)
    compute_bound = MachineRates.user(1e6, gemm_flops_per_s=1e6, bandwidth_bytes_per_s=1e15)
    assert cg.predict_seconds(dense_shape(n, 100.0), compute_bound, 1e-2) == pytest.approx(
        iters * (2 * n * n + 10 * n) / 1e6)
    with pytest.raises(ValueError, match="nnz"):
        cg.predict_seconds(dense_shape(10, nnz=101), RATES, 1e-2)


def test_woodbury_model_applicability_and_reuse_of_the_gram_matrix():
    n, m = 10**4, 64
    shape = SystemShape(n=n, nnz=n * n, d=n, kappa=10.0, factor_rows=m)
    woodbury = SOLVERS["woodbury"]
    expected = 2 * n * m * m / 1e10 + (m**3 / 3 + 2 * m * m) / 1e9 + 16 * n * m / 1e10
    assert woodbury.predict_seconds(shape, RATES, 1e-6) == pytest.approx(expected)
    formed = SystemShape(n=n, nnz=n * n, d=n, kappa=10.0, factor_rows=m, gram_formed=True)
    assert woodbury.predict_seconds(formed, RATES, 1e-6) == pytest.approx(
        expected - 2 * n * m * m / 1e10)
    assert woodbury.applicable(shape)
    assert not woodbury.applicable(dense_shape(n))
    no_shift = SystemShape(n=n, nnz=n * n, d=n, kappa=10.0, factor_rows=m, shift_positive=False)
    assert not woodbury.applicable(no_shift)


def test_factor_form_charges_solvers_that_form_the_matrix():
    dense = predict_classical(dense_shape(1000), RATES, 1e-6)
    factor = predict_classical(
        SystemShape(n=1000, nnz=1000**2, d=1000, kappa=10.0, factor_rows=50), RATES, 1e-6)
    form = 2.0 * 1000**2 * 50 / 1e10 + 16.0 * 1000**2 / 1e10
    for name in ("cholesky", "lu", "inverse"):
        assert SOLVERS[name].forms_matrix
        assert factor[name] == pytest.approx(dense[name] + form)
    assert factor["cg"] == dense["cg"]
    assert list(factor) == ["cholesky", "lu", "inverse", "cg", "woodbury"]
    assert "woodbury" not in dense


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: MachineRates.user(0.0), "dense_flops_per_s"),
        (lambda: MachineRates.user(1e9, bandwidth_bytes_per_s=-1.0), "bandwidth_bytes_per_s"),
        (lambda: MachineRates(1e9, 1e9, 1e9, source="guess"), "source"),
        (lambda: MachineRates.from_dict({"dense_flops_per_s": 1.0, "x": 2}), "x"),
        (lambda: MachineRates.from_dict({"dense_flops_per_s": 1.0}), "MachineRates"),
    ],
)
def test_machine_rates_bad_inputs(call, param):
    with pytest.raises(ValueError, match=param):
        call()


def test_machine_rates_roundtrip():
    assert MachineRates.from_dict(json.loads(json.dumps(RATES.to_dict()))) == RATES
    user = MachineRates.user(1e9)
    assert user.source == "user" and user.gemm_flops_per_s == 1e9
