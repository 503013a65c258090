import pytest
import torch

from qnewton.conditioning import LinearSystem
from qnewton.curvature import CurvatureBlock
from qnewton.solvers import (
    SolveError,
    applicable_solvers,
    emulate_qlsa,
    relative_error,
    solve_cg,
    solve_classical,
    solve_woodbury,
)


def factor_system(n=30, m=8, lam=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(m, n, generator=g, dtype=torch.float64)
    block = CurvatureBlock("w", "fisher", factor=f, scale=1.0 / m)
    return LinearSystem(block=block, shift=lam, reg=lam, d=n, nnz=n * n)


def dense_system(a):
    block = CurvatureBlock("w", "hessian", dense=a)
    n = a.shape[0]
    return LinearSystem(block=block, shift=0.0, reg=0.0, dense=a, d=n, nnz=n * n)


def spd(n, kappa, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(float(kappa))), n, dtype=torch.float64)
    return (q * eig) @ q.T


@pytest.mark.parametrize("name", ["cholesky", "lu", "cg", "woodbury", "inverse"])
def test_classical_solvers_match_dense_solve(name):
    system = factor_system()
    b = torch.randn(system.n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    reference = torch.linalg.solve(system.to_dense(), b)
    result = solve_classical(name, system, b)
    assert result.solver == name
    assert relative_error(result.x, reference) < 1e-8
    assert result.residual < 1e-8
    assert result.seconds >= 0


def test_cholesky_rejects_indefinite_matrix():
    a = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64))
    with pytest.raises(SolveError, match="not positive definite"):
        solve_classical("cholesky", dense_system(a), torch.ones(3, dtype=torch.float64))


def test_lu_rejects_singular_matrix():
    a = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(SolveError, match="singular"):
        solve_classical("lu", dense_system(a), torch.ones(3, dtype=torch.float64))


def test_cg_ritz_kappa_is_close_to_exact():
    a = spd(60, 1e3)
    system = dense_system(a)
    b = torch.randn(60, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    result = solve_cg(system, b, rtol=1e-10)
    exact = float(torch.linalg.cond(a))
    assert result.iterations is not None and result.iterations <= 600
    assert result.kappa is not None
    # Ritz values lie inside the spectrum: a lower bound that converges once CG has run long.
    assert result.kappa.value <= exact * (1 + 1e-8)
    assert result.kappa.value >= 0.5 * exact


def test_cg_detects_indefinite_matrix():
    a = torch.diag(torch.tensor([1.0, -3.0], dtype=torch.float64))
    with pytest.raises(SolveError, match="not PD"):
        solve_cg(dense_system(a), torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_woodbury_needs_factor_form_and_shift():
    with pytest.raises(SolveError, match="factor-form"):
        solve_woodbury(dense_system(spd(5, 10)), torch.ones(5, dtype=torch.float64))
    system = factor_system(lam=0.0)
    assert "woodbury" not in applicable_solvers(system)
    with pytest.raises(SolveError, match="positive diagonal shift"):
        solve_woodbury(system, torch.ones(system.n, dtype=torch.float64))


def test_unknown_solver_and_bad_rhs_are_rejected():
    system = factor_system()
    with pytest.raises(ValueError, match="solver must be one of"):
        solve_classical("qr", system, torch.ones(system.n, dtype=torch.float64))
    with pytest.raises(ValueError, match="b must have shape"):
        solve_classical("cholesky", system, torch.ones(system.n + 1, dtype=torch.float64))


@pytest.mark.parametrize("eps", [1e-3, 1e-2, 0.2])
def test_emulated_qlsa_has_exactly_the_allowed_error(eps):
    system = factor_system()
    b = torch.randn(system.n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = torch.linalg.solve(system.to_dense(), b)
    result = emulate_qlsa(system, b, eps=eps, seed=7)
    assert result.solver == "qlsa-emulated"
    assert relative_error(result.x, exact) == pytest.approx(eps, rel=1e-9)
    again = emulate_qlsa(system, b, eps=eps, seed=7)
    assert torch.equal(result.x, again.x)
    other = emulate_qlsa(system, b, eps=eps, seed=8)
    assert not torch.equal(result.x, other.x)


def test_emulated_qlsa_shot_noise_shrinks_with_more_shots():
    system = factor_system(n=20)
    b = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    exact = torch.linalg.solve(system.to_dense(), b)
    errors = {
        shots: sum(relative_error(emulate_qlsa(system, b, eps=1e-3, shots=shots, seed=s).x, exact)
                   for s in range(5)) / 5
        for shots in (100, 1_000_000)
    }
    assert errors[1_000_000] < errors[100] / 10
    assert errors[100] > 1e-3  # sampling noise dominates the algorithmic error at 100 shots


def test_emulated_qlsa_rejects_bad_arguments():
    system = factor_system()
    b = torch.ones(system.n, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps must be in"):
        emulate_qlsa(system, b, eps=1.5)
    with pytest.raises(ValueError, match="shots must be"):
        emulate_qlsa(system, b, eps=0.1, shots=0)
