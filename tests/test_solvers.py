import pytest
import torch

from qnewton.curvature import DenseBlock, FactorBlock
from qnewton.solvers import (
    SOLVERS,
    SolveError,
    applicable_solvers,
    relative_error,
    solve_classical,
)
from qnewton.system import LinearSystem


def factor_system(n=30, m=8, lam=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(m, n, generator=g, dtype=torch.float64)
    block = FactorBlock("w", "fisher", f, scale=1.0 / m)
    return LinearSystem(block=block, shift=lam, reg=lam, d=n, nnz=n * n)


def dense_system(a):
    block = DenseBlock("w", "hessian", a)
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
    result = SOLVERS["cg"].solve(system, b, rtol=1e-10)
    exact = float(torch.linalg.cond(a))
    assert result.iterations is not None and result.iterations <= 600
    assert result.kappa is not None
    # Ritz values lie inside the spectrum: a lower bound that converges once CG has run long.
    assert result.kappa.value <= exact * (1 + 1e-8)
    assert result.kappa.value >= 0.5 * exact


def test_cg_detects_indefinite_matrix():
    a = torch.diag(torch.tensor([1.0, -3.0], dtype=torch.float64))
    with pytest.raises(SolveError, match="not PD"):
        SOLVERS["cg"].solve(dense_system(a), torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_woodbury_needs_factor_form_and_shift():
    with pytest.raises(SolveError, match="factor-form"):
        SOLVERS["woodbury"].solve(dense_system(spd(5, 10)), torch.ones(5, dtype=torch.float64))
    system = factor_system(lam=0.0)
    assert "woodbury" not in applicable_solvers(system)
    with pytest.raises(SolveError, match="positive diagonal shift"):
        SOLVERS["woodbury"].solve(system, torch.ones(system.n, dtype=torch.float64))


def test_unknown_solver_and_bad_rhs_are_rejected():
    system = factor_system()
    with pytest.raises(ValueError,
                       match="one of cholesky, lu, inverse, cg, woodbury, kronecker; got"):
        solve_classical("qr", system, torch.ones(system.n, dtype=torch.float64))
    with pytest.raises(ValueError, match="b must have shape"):
        solve_classical("cholesky", system, torch.ones(system.n + 1, dtype=torch.float64))
