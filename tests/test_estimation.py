"""Tests for qnewton.estimation against dense ground truth (eigvalsh, numpy.linalg.cond)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnewton.curvature import DenseBlock, FactorBlock
from qnewton.estimation import (
    KappaEstimate,
    KappaPolicy,
    analyse_kappa,
    bound_looseness,
    estimate_kappa,
    gershgorin_upper,
    kappa_exact,
    kappa_from_cg,
    kappa_gej_bound,
    kappa_lanczos,
    kappa_merikoski_bound,
    kappa_regularization_bound,
    kw_relative_error,
    lanczos,
    ritz_values,
    spectral_norm_upper,
)
from qnewton.system import LinearSystem

F64 = torch.float64
SETTINGS = settings(max_examples=60, deadline=None)


def spd_with_spectrum(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(eigs) Qᵀ with a seeded random orthogonal Q, exactly symmetrized."""
    gen = torch.Generator().manual_seed(seed)
    n = eigs.numel()
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    a = (q * eigs.to(F64)) @ q.T
    return 0.5 * (a + a.T)


def spd_kappa(n: int, kappa: float, seed: int = 0) -> torch.Tensor:
    return spd_with_spectrum(torch.logspace(0, math.log10(kappa), n, dtype=F64), seed)


def random_spd(n: int, seed: int) -> torch.Tensor:
    """Wishart-like SPD matrix with a random spectrum (not log-spaced)."""
    gen = torch.Generator().manual_seed(seed)
    b = torch.randn(n, n + 2, generator=gen, dtype=F64)
    a = b @ b.T / (n + 2) + 1e-2 * torch.eye(n, dtype=F64)
    return 0.5 * (a + a.T)


def random_symmetric(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    b = torch.randn(n, n, generator=gen, dtype=F64)
    return 0.5 * (b + b.T)


def true_kappa(a: torch.Tensor) -> float:
    eig = torch.linalg.eigvalsh(a)
    return float(eig[-1] / eig[0])


def matvec_of(a: torch.Tensor):
    return lambda v: a @ v


# ----------------------------------------------------------------------------- exact


@pytest.mark.parametrize("seed", range(5))
def test_kappa_exact_matches_numpy_cond(seed: int) -> None:
    a = random_spd(30, seed)
    est = kappa_exact(a)
    assert est.kind == "exact"
    assert est.value == pytest.approx(np.linalg.cond(a.numpy()), rel=1e-9)
    assert est.log10 == pytest.approx(math.log10(est.value), rel=1e-12)
    assert est.seconds >= 0.0


def test_kappa_exact_prescribed_spectrum() -> None:
    est = kappa_exact(spd_kappa(50, 1e3))
    assert est.value == pytest.approx(1e3, rel=1e-9)


def test_kappa_exact_not_positive_definite_is_inf() -> None:
    a = torch.diag(torch.tensor([2.0, 1.0, -0.5], dtype=F64))
    est = kappa_exact(a)
    assert est.value == math.inf and est.log10 == math.inf


@pytest.mark.parametrize(
    "bad",
    [
        torch.ones(3, 4, dtype=F64),
        torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=F64),
        torch.tensor([[1.0, math.nan], [math.nan, 1.0]], dtype=F64),
        torch.eye(3, dtype=torch.int64),
    ],
)
def test_kappa_exact_rejects_bad_matrices(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="^a must"):
        kappa_exact(bad)


def test_kappa_estimate_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        KappaEstimate(value=1.0, log10=0.0, kind="guess", method="x")


# ----------------------------------------------------------------------------- GEJ / Merikoski


@SETTINGS
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 2**31 - 1),
    log_kappa=st.floats(0.0, 8.0),
    wishart=st.booleans(),
)
def test_norm_determinant_bounds_dominate_exact(
    n: int, seed: int, log_kappa: float, wishart: bool
) -> None:
    a = random_spd(n, seed) if wishart else spd_kappa(n, 10.0**log_kappa, seed)
    exact = kappa_exact(a)
    gej = kappa_gej_bound(a)
    mer = kappa_merikoski_bound(a)
    assert gej.kind == mer.kind == "upper"
    tol = 1e-7
    assert gej.log10 >= exact.log10 - tol
    assert mer.log10 >= exact.log10 - tol
    # Merikoski = GEJ·(1+x)/2: never looser than GEJ, and at most log10(2) tighter.
    assert mer.log10 <= gej.log10 + 1e-12
    assert gej.log10 - mer.log10 <= math.log10(2.0) + 1e-12


@SETTINGS
@given(n=st.integers(2, 25), seed=st.integers(0, 2**31 - 1))
def test_norm_determinant_bounds_hold_for_general_matrices(n: int, seed: int) -> None:
    """Both bound σ_max/σ_min of any nonsingular square matrix."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=F64)
    cond = float(np.linalg.cond(a.numpy()))
    assert kappa_gej_bound(a).log10 >= math.log10(cond) - 1e-7
    assert kappa_merikoski_bound(a).log10 >= math.log10(cond) - 1e-7


def test_merikoski_is_exact_for_2x2_even_when_ill_conditioned() -> None:
    """For N = 2 the Merikoski bound is attained; at κ = 1e12 the naive √((1+x)/(1−x))
    loses 1 − x to cancellation, the log-space form does not."""
    for kappa in (1.0, 3.0, 1e4):
        a = spd_with_spectrum(torch.tensor([1.0, 1.0 / kappa], dtype=F64), seed=3)
        assert kappa_merikoski_bound(a).value == pytest.approx(kappa, rel=1e-8)
    for kappa in (1e8, 1e12, 1e15):  # diagonal: no rounding in forming A
        a = torch.diag(torch.tensor([1.0, 1.0 / kappa], dtype=F64))
        assert kappa_merikoski_bound(a).value == pytest.approx(kappa, rel=1e-8)
    a = torch.diag(torch.tensor([1.0, 1e-12], dtype=F64))
    y = (2.0 / float(torch.sum(a * a))) ** 2 * float(torch.linalg.det(a)) ** 2
    x = math.sqrt(1.0 - y)
    assert x == 1.0  # the naive formula would divide by zero here


def test_identity_bounds_are_one() -> None:
    a = torch.eye(10, dtype=F64)
    assert kappa_merikoski_bound(a).value == pytest.approx(1.0, abs=1e-12)
    # GEJ is off by its factor 2 even at the identity
    assert kappa_gej_bound(a).value == pytest.approx(2.0, rel=1e-12)


def test_bounds_finite_in_log_space_where_naive_overflows() -> None:
    n = 200
    a = spd_with_spectrum(torch.logspace(-4, 0, n, dtype=F64), seed=1)
    fro = float(torch.linalg.matrix_norm(a, "fro"))
    with np.errstate(all="ignore"):
        det = np.linalg.det(a.numpy())
        naive = np.float64(2.0) / abs(det) * np.float64(fro / math.sqrt(n)) ** n
    assert det == 0.0 and not math.isfinite(naive)  # det underflows: naive formula is useless
    exact = kappa_exact(a)
    for est in (kappa_gej_bound(a), kappa_merikoski_bound(a)):
        assert math.isfinite(est.log10)
        assert est.log10 >= exact.log10
        assert bound_looseness(est, exact) > 10.0


def test_looseness_reported_at_n100() -> None:
    a = spd_kappa(100, 1e3, seed=0)
    exact = kappa_exact(a)
    gej, mer = kappa_gej_bound(a), kappa_merikoski_bound(a)
    # "astronomically loose" (docs/method.md §4.2): dozens of decades above κ = 1e3
    assert bound_looseness(gej, exact) > 20.0
    assert bound_looseness(mer, exact) > 20.0
    assert bound_looseness(exact, exact) == 0.0


def test_singular_matrix_bounds_are_inf() -> None:
    a = torch.diag(torch.tensor([1.0, 0.0, 2.0], dtype=F64))
    assert kappa_gej_bound(a).value == math.inf
    assert kappa_merikoski_bound(a).log10 == math.inf


def test_bound_looseness_rejects_non_estimates() -> None:
    with pytest.raises(ValueError, match="bound and exact"):
        bound_looseness(3.0, kappa_exact(torch.eye(2, dtype=F64)))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- Lanczos


def test_lanczos_tridiagonal_matches_projection() -> None:
    a = random_spd(40, 7)
    alphas, betas = lanczos(matvec_of(a), 40, 8, seed=3)
    assert alphas.shape == (8,) and betas.shape == (7,)
    assert bool((betas > 0).all())
    theta = ritz_values(alphas, betas)
    eig = torch.linalg.eigvalsh(a)
    assert float(theta[0]) >= float(eig[0]) - 1e-10
    assert float(theta[-1]) <= float(eig[-1]) + 1e-10
    # full run reproduces the spectrum
    alphas, betas = lanczos(matvec_of(a), 40, 40, seed=3)
    torch.testing.assert_close(ritz_values(alphas, betas), eig, rtol=1e-9, atol=1e-10)


def test_lanczos_on_long_vectors_matches_a_known_spectrum(monkeypatch) -> None:
    # vectors at TORCH_ORTHOGONALIZE_MIN and up take the torch reorthogonalization: a diagonal
    # matrix with 8 distinct eigenvalues is resolved in 8 steps, on both paths alike
    from qnewton.estimation import krylov

    n = krylov.TORCH_ORTHOGONALIZE_MIN
    levels = torch.arange(1.0, 9.0, dtype=F64)
    diag = levels.repeat_interleave(n // 8)
    results = []
    for threshold in (n, n + 1):  # torch path, NumPy path
        monkeypatch.setattr(krylov, "TORCH_ORTHOGONALIZE_MIN", threshold)
        alphas, betas = lanczos(lambda v: diag * v, n, 8, seed=5)
        torch.testing.assert_close(ritz_values(alphas, betas), levels, rtol=1e-9, atol=0)
        results.append(alphas)
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)


def test_lanczos_stops_on_invariant_subspace() -> None:
    a = torch.diag(torch.tensor([1.0, 1.0, 2.0, 2.0, 2.0], dtype=F64))  # 2 distinct eigenvalues
    alphas, betas = lanczos(matvec_of(a), 5, 5)
    assert alphas.numel() == 2 and betas.numel() == 1
    torch.testing.assert_close(ritz_values(alphas, betas), torch.tensor([1.0, 2.0], dtype=F64))


def test_lanczos_is_reproducible_by_seed() -> None:
    a = random_spd(20, 1)
    first = lanczos(matvec_of(a), 20, 5, seed=11)
    second = lanczos(matvec_of(a), 20, 5, seed=11)
    other = lanczos(matvec_of(a), 20, 5, seed=12)
    assert torch.equal(first[0], second[0])
    assert not torch.equal(first[0], other[0])


@SETTINGS
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 2**31 - 1),
    steps=st.integers(1, 12),
    log_kappa=st.floats(0.0, 6.0),
)
def test_kappa_lanczos_is_lower_bound(n: int, seed: int, steps: int, log_kappa: float) -> None:
    a = spd_kappa(n, 10.0**log_kappa, seed)
    est = kappa_lanczos(matvec_of(a), n, steps, seed)
    assert est.kind == "lower"
    assert est.value <= true_kappa(a) * (1 + 1e-9)
    assert est.value >= 1.0


def test_kappa_lanczos_converges_with_enough_steps() -> None:
    a = spd_kappa(60, 1e3, seed=2)
    assert kappa_lanczos(matvec_of(a), 60, 60).value == pytest.approx(1e3, rel=1e-8)


def test_kappa_lanczos_indefinite_is_inf() -> None:
    a = torch.diag(torch.tensor([3.0, 1.0, -1.0], dtype=F64))
    assert kappa_lanczos(matvec_of(a), 3, 3).value == math.inf


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 0}, "n"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_lanczos_rejects_bad_arguments(kwargs: dict, name: str) -> None:
    args = {"n": 4, "steps": 3, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=f"^{name} must"):
        lanczos(matvec_of(torch.eye(4, dtype=F64)), args["n"], args["steps"], seed=args["seed"])


def test_lanczos_rejects_wrong_matvec() -> None:
    with pytest.raises(ValueError, match="matvec"):
        lanczos(lambda v: v[:2], 4, 3)
    with pytest.raises(ValueError, match="matvec"):
        lanczos("not callable", 4, 3)  # type: ignore[arg-type]


def test_ritz_values_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="betas"):
        ritz_values(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="alphas"):
        ritz_values(torch.ones(0), torch.ones(0))


# ----------------------------------------------------------------------------- norm bounds


@SETTINGS
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 2**31 - 1),
    steps=st.integers(1, 30),
    kind=st.sampled_from(["symmetric", "psd", "clustered"]),
)
def test_spectral_norm_upper_dominates_true_norm(n: int, seed: int, steps: int, kind: str) -> None:
    if kind == "symmetric":
        a = random_symmetric(n, seed)
    elif kind == "psd":
        gen = torch.Generator().manual_seed(seed)
        b = torch.randn(n, max(1, n // 3), generator=gen, dtype=F64)
        a = b @ b.T
    else:  # one dominant eigenvalue above a tight cluster: hard for few Lanczos steps
        eigs = torch.full((n,), 1.0, dtype=F64) - 1e-3 * torch.rand(n, dtype=F64)
        eigs[0] = 1.5
        a = spd_with_spectrum(eigs, seed)
    true = float(torch.linalg.matrix_norm(a, 2))
    for psd in (False, True) if kind != "symmetric" else (False,):
        upper = spectral_norm_upper(matvec_of(a), n, steps, seed, psd=psd)
        assert upper >= true
    assert gershgorin_upper(a) >= true * (1 - 1e-12)


def test_spectral_norm_upper_is_reasonably_tight() -> None:
    n = 1000
    gen = torch.Generator().manual_seed(0)
    b = torch.randn(n, 100, generator=gen, dtype=F64)
    a = b @ b.T / 100
    true = float(torch.linalg.matrix_norm(a, 2))
    upper = spectral_norm_upper(matvec_of(a), n, 20, psd=True)
    assert true <= upper <= 1.4 * true
    upper_general = spectral_norm_upper(matvec_of(a), n, 40)
    assert true <= upper_general <= 1.4 * true


def test_spectral_norm_upper_residual_bound_alone_would_fail() -> None:
    """The residual-padded Ritz value θ + ‖r‖ is NOT an upper bound with one step: documents
    why spectral_norm_upper uses the Kuczyński–Woźniakowski inflation instead."""
    n = 400
    a = torch.zeros(n, n, dtype=F64)
    a[0, 0] = 10.0
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(n, generator=gen, dtype=F64)
    v = v / v.norm()
    theta = float(v @ a @ v)
    residual = float((a @ v - theta * v).norm())
    assert theta + residual < 10.0
    assert spectral_norm_upper(matvec_of(a), n, 1, psd=True) == math.inf  # honest: no info
    assert spectral_norm_upper(matvec_of(a), n, 30, psd=True) >= 10.0


def test_kw_relative_error() -> None:
    eps = kw_relative_error(10_000, 20, 1e-6)
    assert 1.648 * 100 * math.exp(-39 * math.sqrt(eps)) == pytest.approx(1e-6, rel=1e-9)
    assert kw_relative_error(10_000, 40, 1e-6) < eps
    with pytest.raises(ValueError, match="failure_probability"):
        kw_relative_error(10, 3, 1.0)


def test_gershgorin_upper_values() -> None:
    a = torch.tensor([[2.0, -1.0], [-1.0, 3.0]], dtype=F64)
    assert gershgorin_upper(a) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="^a must"):
        gershgorin_upper(torch.ones(2, 3))


@SETTINGS
@given(
    n=st.integers(2, 40),
    rank=st.integers(1, 10),
    seed=st.integers(0, 2**31 - 1),
    log_lam=st.floats(-4.0, 2.0),
)
def test_regularization_bound_dominates_exact(n: int, rank: int, seed: int, log_lam: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(rank, n, generator=gen, dtype=F64)
    h = f.T @ f / rank
    lam = 10.0**log_lam
    a = h + lam * torch.eye(n, dtype=F64)
    norm_upper = spectral_norm_upper(matvec_of(h), n, 20, seed, psd=True)
    est = kappa_regularization_bound(norm_upper, lam)
    assert est.kind == "upper"
    assert est.log10 >= math.log10(true_kappa(a)) - 1e-9


def test_regularization_bound_formula_and_errors() -> None:
    assert kappa_regularization_bound(9.0, 1.0).value == pytest.approx(10.0)
    with pytest.raises(ValueError, match="lam"):
        kappa_regularization_bound(1.0, 0.0)
    with pytest.raises(ValueError, match="norm_upper"):
        kappa_regularization_bound(-1.0, 1.0)
    assert kappa_regularization_bound(math.inf, 1.0).value == math.inf
    # too few steps for δ = 1e-6 at this N: the dispatcher returns an honest infinite bound
    system = factor_system(n=2000, m=50)
    assert estimate_kappa(system, "regularization", steps=3).value == math.inf


# ----------------------------------------------------------------------------- CG


def run_cg(a: torch.Tensor, b: torch.Tensor, iters: int) -> tuple[list[float], list[float]]:
    """Textbook CG, recording α_k (step lengths) and β_k (‖r_{k+1}‖²/‖r_k‖²)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    alphas, betas = [], []
    for _ in range(iters):
        ap = a @ p
        alpha = rr / float(p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = float(r @ r)
        alphas.append(alpha)
        beta = rr_new / rr
        betas.append(beta)
        if rr_new < 1e-28:
            break
        p = r + beta * p
        rr = rr_new
    return alphas, betas


def test_kappa_from_cg_close_to_exact_for_well_conditioned_matrix() -> None:
    a = spd_kappa(50, 20.0, seed=4)
    b = torch.randn(50, generator=torch.Generator().manual_seed(5), dtype=F64)
    alphas, betas = run_cg(a, b, 30)
    est = kappa_from_cg(alphas, betas)
    assert est.kind == "estimate" and est.method == "cg"
    assert est.value == pytest.approx(20.0, rel=0.02)
    assert est.value <= 20.0 * (1 + 1e-6)  # Ritz values: lower bound in (near-)exact arithmetic


def test_kappa_from_cg_tridiagonal_equals_lanczos() -> None:
    """CG started from x0 = 0 with b is Lanczos started from b/‖b‖: same Ritz values."""
    a = random_spd(25, 3)
    b = torch.randn(25, generator=torch.Generator().manual_seed(1), dtype=F64)
    alphas, betas = run_cg(a, b, 6)
    cg_kappa = kappa_from_cg(alphas, betas).value
    t = []
    q = b / b.norm()
    basis = [q]
    for _ in range(6):
        basis_m = torch.stack(basis, dim=1)
        w = a @ basis[-1]
        t.append(float(basis[-1] @ w))
        w = w - basis_m @ (basis_m.T @ w)
        w = w - basis_m @ (basis_m.T @ w)
        basis.append(w / w.norm())
    q6 = torch.stack(basis[:6], dim=1)
    ritz = torch.linalg.eigvalsh(q6.T @ a @ q6)
    assert cg_kappa == pytest.approx(float(ritz[-1] / ritz[0]), rel=1e-8)


def test_kappa_from_cg_accepts_trailing_beta_and_rejects_bad_input() -> None:
    assert kappa_from_cg([0.5], []).value == pytest.approx(1.0)
    assert kappa_from_cg([0.5, 0.4], [0.1, 0.2]).value == kappa_from_cg([0.5, 0.4], [0.1]).value
    with pytest.raises(ValueError, match="alphas_cg"):
        kappa_from_cg([], [])
    with pytest.raises(ValueError, match="alphas_cg"):
        kappa_from_cg([0.5, -1.0], [0.1])
    with pytest.raises(ValueError, match="betas_cg"):
        kappa_from_cg([0.5, 0.4], [-0.1])
    with pytest.raises(ValueError, match="betas_cg"):
        kappa_from_cg([0.5, 0.4, 0.3], [])


# ----------------------------------------------------------------------------- dispatcher


def factor_system(n: int = 30, m: int = 8, lam: float = 1e-2, seed: int = 0) -> LinearSystem:
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(m, n, generator=gen, dtype=F64)
    block = FactorBlock("w", "fisher", f, scale=1.0 / m)
    return LinearSystem(block=block, shift=lam, reg=lam, d=n, nnz=n * n)


def forbid_dense(system: LinearSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args, **_kwargs):
        raise AssertionError("formed a dense matrix")

    monkeypatch.setattr(system.block, "to_dense", boom)
    monkeypatch.setattr(system, "to_dense", boom)


@pytest.mark.parametrize("method", ["lanczos", "regularization", "auto"])
def test_estimate_kappa_matvec_methods_never_form_factor_systems(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = factor_system(n=200, m=60)  # above auto's exact/Gram thresholds
    exact = true_kappa(system.to_dense())
    forbid_dense(system, monkeypatch)
    est = estimate_kappa(system, method)
    if est.kind == "upper":  # H has rank 8 < 30: the bound is tight up to eigvalsh rounding
        assert est.value >= exact * (1 - 1e-9)
    else:
        assert est.kind == "lower" and est.value <= exact * (1 + 1e-9)
    assert est.seconds > 0.0


def test_auto_policy_takes_the_cheapest_applicable_path() -> None:
    small = factor_system(n=30, m=8)
    kappa, norm = analyse_kappa(small, KappaPolicy())  # N ≤ exact_below: eigvalsh
    a = small.to_dense()
    assert (kappa.kind, kappa.method) == ("exact", "eigvalsh")
    assert kappa.value == pytest.approx(true_kappa(a), rel=1e-8)
    assert norm == pytest.approx(float(torch.linalg.matrix_norm(a, 2)), rel=1e-10)
    wide = factor_system(n=64, m=8)  # M ≤ gram_below and 4M ≤ N: the M×M Gram matrix
    kappa, norm = analyse_kappa(wide, KappaPolicy(exact_below=0))
    assert (kappa.kind, kappa.method) == ("exact", "gram-eigvalsh")
    assert kappa.value == pytest.approx(true_kappa(wide.to_dense()), rel=1e-8)
    kappa, _ = analyse_kappa(wide, KappaPolicy(exact_below=0, gram_below=0))
    assert (kappa.kind, kappa.method) == ("upper", "regularization")
    assert kappa.value >= true_kappa(wide.to_dense()) * (1 - 1e-9)
    # Hessian blocks can be indefinite: no regularization bound, the Lanczos lower bound
    h = random_spd(20, 0)
    hess = LinearSystem(block=DenseBlock("h", "hessian", h), shift=0.1, reg=0.1, dense=h)
    kappa, norm = analyse_kappa(hess, KappaPolicy(exact_below=0))
    assert (kappa.kind, kappa.method) == ("lower", "lanczos")
    assert kappa.value <= true_kappa(h) * (1 + 1e-9)
    assert norm == pytest.approx(gershgorin_upper(h))
    pruned = LinearSystem(
        block=small.block, shift=0.1, reg=0.1, dense=small.to_dense(), pruned=True
    )
    assert analyse_kappa(pruned, KappaPolicy(exact_below=0))[0].kind == "lower"
    assert estimate_kappa(small).method == "eigvalsh"  # estimate_kappa's auto is the same policy


def test_estimate_kappa_dense_methods_agree_with_ground_truth() -> None:
    system = factor_system(n=25, m=30, lam=1e-3)
    a = system.to_dense()
    exact = estimate_kappa(system, "exact")
    assert exact.value == pytest.approx(np.linalg.cond(a.numpy()), rel=1e-8)
    for method in ("gej", "merikoski", "regularization"):
        assert estimate_kappa(system, method).log10 >= exact.log10 - 1e-9
    assert estimate_kappa(system, "lanczos").value <= exact.value * (1 + 1e-9)


def test_estimate_kappa_rejects_bad_method_and_inapplicable_regularization() -> None:
    system = factor_system()
    with pytest.raises(ValueError, match="method"):
        estimate_kappa(system, "svd")
    no_shift = LinearSystem(block=system.block, shift=0.0, reg=0.0)
    with pytest.raises(ValueError, match="regularization"):
        estimate_kappa(no_shift, "regularization")
    h = random_spd(20, 0)
    hess = LinearSystem(block=DenseBlock("h", "hessian", h), shift=0.1, reg=0.1, dense=h)
    with pytest.raises(ValueError, match="regularization"):
        estimate_kappa(hess, "regularization")


def test_a_reused_block_keeps_its_norm_bound_and_its_kappa(monkeypatch) -> None:
    """A factor block analysed again (reused curvature, another damping) runs no second
    Lanczos: the kept ‖H‖₂ bound gives the κ bound a fresh run would give, at any shift."""
    from qnewton.estimation import analyse_kappa, krylov, methods

    g = torch.Generator().manual_seed(2)
    block = FactorBlock("b", "fisher", torch.randn(60, 50, generator=g, dtype=F64), 1 / 60)
    policy = KappaPolicy(exact_below=8, gram_below=4)  # the Lanczos-norm path
    runs = []
    real = krylov.spectral_norm_upper
    monkeypatch.setattr(methods, "spectral_norm_upper",
                        lambda *a, **k: runs.append(1) or real(*a, **k))
    first = [analyse_kappa(LinearSystem(block, shift=mu, reg=mu), policy)[0] for mu in (0.1, 0.3)]
    assert len(runs) == 1
    fresh_block = FactorBlock("b", "fisher", block.factor.clone(), 1 / 60)
    fresh = [analyse_kappa(LinearSystem(fresh_block, shift=mu, reg=mu), policy)[0]
             for mu in (0.1, 0.3)]
    assert [k.value for k in first] == [k.value for k in fresh]
    assert all(k.kind == "upper" for k in first)
    for mu, k in zip((0.1, 0.3), first, strict=True):
        eig = torch.linalg.eigvalsh(block.to_dense() + mu * torch.eye(50, dtype=F64))
        assert k.value >= float(eig[-1] / eig[0])
