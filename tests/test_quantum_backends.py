"""The QLSA backends against exact dense solves."""

import pytest
import torch

from qnewton.curvature import FactorBlock
from qnewton.quantum.backends import QLSA_BACKENDS
from qnewton.solvers import relative_error
from qnewton.system import LinearSystem

EMULATED = QLSA_BACKENDS["emulated"]


def factor_system(n=30, m=8, lam=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(m, n, generator=g, dtype=torch.float64)
    block = FactorBlock("w", "fisher", f, scale=1.0 / m)
    return LinearSystem(block=block, shift=lam, reg=lam, d=n, nnz=n * n)


@pytest.mark.parametrize("eps", [1e-3, 1e-2, 0.2])
def test_emulated_qlsa_has_exactly_the_allowed_error(eps):
    system = factor_system()
    b = torch.randn(system.n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = torch.linalg.solve(system.to_dense(), b)
    result = EMULATED.solve(system, b, eps=eps, seed=7)
    assert result.solver == "qlsa-emulated"
    assert relative_error(result.x, exact) == pytest.approx(eps, rel=1e-9)
    again = EMULATED.solve(system, b, eps=eps, seed=7)
    assert torch.equal(result.x, again.x)
    other = EMULATED.solve(system, b, eps=eps, seed=8)
    assert not torch.equal(result.x, other.x)


@pytest.mark.parametrize("m,expected", [(8, "woodbury"), (30, "cholesky"), (60, "cholesky")])
def test_emulated_qlsa_solves_exactly_with_the_smaller_system(monkeypatch, m, expected):
    # Woodbury's capacitance matrix is M×M: with M ≥ N rows it is larger than A itself.
    import qnewton.quantum.backends.emulated as module

    used, real = [], module.solve_classical
    monkeypatch.setattr(module, "solve_classical",
                        lambda name, *a, **kw: used.append(name) or real(name, *a, **kw))
    system = factor_system(n=30, m=m)
    b = torch.ones(system.n, dtype=torch.float64)
    result = EMULATED.solve(system, b, eps=1e-2, seed=1)
    assert used == [expected]
    exact = torch.linalg.solve(system.to_dense(), b)
    assert relative_error(result.x, exact) == pytest.approx(1e-2, rel=1e-9)


def test_emulated_qlsa_shot_noise_shrinks_with_more_shots():
    system = factor_system(n=20)
    b = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    exact = torch.linalg.solve(system.to_dense(), b)
    errors = {
        shots: sum(relative_error(EMULATED.solve(system, b, eps=1e-3, shots=shots, seed=s).x,
                                  exact) for s in range(5)) / 5
        for shots in (100, 1_000_000)
    }
    assert errors[1_000_000] < errors[100] / 10
    assert errors[100] > 1e-3  # sampling noise dominates the algorithmic error at 100 shots


def test_emulated_qlsa_rejects_bad_arguments():
    system = factor_system()
    b = torch.ones(system.n, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps must be a finite number > 0 and < 1"):
        EMULATED.solve(system, b, eps=1.5)
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        EMULATED.solve(system, b, eps=0.1, shots=0)
