"""The ``full-batch`` bench case: its problems against ground truth (autograd, exact PDE
solutions, sklearn's objective), the whole-model Levenberg–Marquardt reference against scipy's
MINPACK and the exact logistic optimum, and one tiny end-to-end run. No timed assertions."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from qnewton.bench import full_batch_problems as fbp
from qnewton.bench.full_batch import case_full_batch
from qnewton.bench.full_batch_problem import (
    LOSS_KINDS,
    FullBatchProblem,
    flat_parameters,
    hessian_root,
    load_flat,
    loss_gradient,
    per_sample_loss,
)
from qnewton.bench.full_batch_runs import METHODS, applies, run_method, time_to
from qnewton.bench.levenberg_marquardt import LevenbergMarquardt
from qnewton.bench.settings import SETTINGS
from qnewton.solvers import MachineRates

DT = torch.float64
RATES = MachineRates(1e9, 1e9, 1e9)  # QNewton's time models only; nothing is calibrated


def _targets(kind: str, s: int, c: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "softmax-ce":
        return torch.randint(0, c, (s,), generator=g)
    return torch.rand(s, c, generator=g, dtype=DT)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_loss_gradient_and_hessian_root_match_autograd(kind):
    s, c = 3, 4
    z = torch.randn(s, c, dtype=DT, generator=torch.Generator().manual_seed(0))
    t = _targets(kind, s, c)
    grad = torch.func.vmap(torch.func.grad(
        lambda zi, ti: per_sample_loss(kind, zi[None], ti[None])[0]))(z, t)
    hess = torch.func.vmap(torch.func.hessian(
        lambda zi, ti: per_sample_loss(kind, zi[None], ti[None])[0]))(z, t)
    root = hessian_root(kind, z)
    torch.testing.assert_close(loss_gradient(kind, z, t), grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(root.transpose(1, 2) @ root, hess, rtol=1e-10, atol=1e-12)


def test_sigmoid_kl_is_zero_at_a_perfect_reconstruction():
    t = torch.tensor([[0.0, 0.25, 1.0]], dtype=DT)
    z = torch.logit(t.clamp(1e-12, 1 - 1e-12))
    assert float(per_sample_loss("sigmoid-kl", z, t)) == pytest.approx(0.0, abs=1e-10)


# ---------------------------------------------------------------- Levenberg–Marquardt reference


class _Exponential(nn.Module):
    """y = a·exp(b·x): a two-parameter nonlinear least-squares model (unique optimum)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.0], dtype=DT))
        self.b = nn.Parameter(torch.tensor([0.0], dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.exp(self.b * x)


def _exponential_problem() -> FullBatchProblem:
    x = torch.linspace(0, 1, 12, dtype=DT).unsqueeze(1)
    noise = 0.01 * torch.sin(37 * x)  # a non-zero residual at the optimum
    y = 2.0 * torch.exp(-1.3 * x) + noise
    return FullBatchProblem(
        name="exp", description="", make_model=_Exponential, forward=lambda m: m(x),
        functional=fbp._plain_functional, inputs=x, loss_kind="squares", targets=y,
        metric=lambda m: 0.0, metric_name="", target=0.0)


def test_lm_reaches_scipy_minpack_optimum_on_a_nonlinear_least_squares_problem():
    from scipy.optimize import least_squares

    problem = _exponential_problem()
    x, y = problem.inputs.numpy()[:, 0], problem.targets.numpy()[:, 0]
    ref = least_squares(lambda p: p[0] * np.exp(p[1] * x) - y, [1.0, 0.0], method="lm",
                        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    lm = LevenbergMarquardt(problem, problem.make_model())
    for _ in range(200):
        if not lm.step():
            break
    assert lm.converged
    torch.testing.assert_close(lm.theta, torch.tensor(ref.x, dtype=DT), rtol=1e-9, atol=1e-10)
    # objective (1/S)·Σr² against scipy's cost ½·Σr²
    assert lm.loss == pytest.approx(2 * ref.cost / x.size, rel=1e-10)
    assert lm.loss > 1e-6  # a non-zero residual: the check is not of a trivial zero


def test_lm_woodbury_solve_equals_the_parameter_space_solve():
    problem = fbp.least_squares_mlp(0, tiny=True)  # 64 residuals < 97 parameters: dual form
    lm = LevenbergMarquardt(problem, problem.make_model())
    lin = lm.linearize()
    assert "gram" not in lin
    dense = lin["rows"].T @ lin["rows"] + 0.3 * torch.eye(lin["rows"].shape[1], dtype=DT)
    expected = -torch.linalg.solve(dense, lin["grad"])
    torch.testing.assert_close(lm.solve(lin, 0.3), expected, rtol=1e-8, atol=1e-12)


def test_lm_ggn_form_reaches_the_exact_logistic_optimum():
    problem = fbp.logistic_digits(0, tiny=True)
    theta_star, best = fbp.logistic_optimum(0, True)
    lm = LevenbergMarquardt(problem, problem.make_model())
    for _ in range(60):
        if not lm.step() or lm.loss - best < 1e-13:
            break
    assert lm.loss - best < 1e-12
    # unique in the weights (the L2 term); the intercepts up to a common shift
    n_w = problem.make_model().weight.numel()
    torch.testing.assert_close(lm.theta[:n_w], theta_star[:n_w], rtol=0, atol=1e-5)


# -------------------------------------------------------------------------------------- problems


class _Exact(nn.Module):
    """The exact Poisson solution as a module (plus an unused-in-value parameter)."""

    def __init__(self, dim: int, bump: float = 0.0) -> None:
        super().__init__()
        self.dim, self.bump = dim, bump
        self.zero = nn.Parameter(torch.zeros(1, dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = fbp.poisson_exact(self.dim, x) + self.bump * (x * (1 - x)).prod(dim=1)
        return (u + self.zero * x.sum(dim=1)).unsqueeze(1)


@pytest.mark.parametrize("dim", [1, 2])
def test_pinn_residual_vanishes_at_the_exact_solution(dim):
    problem = fbp.poisson(dim, tiny=True)
    exact = _Exact(dim)
    z = problem.forward(exact)
    params = {n: p.detach() for n, p in exact.named_parameters()}
    z_func = problem.functional(exact)(params, problem.inputs)
    assert float(z.detach().abs().max()) < 1e-9 and float(z_func.abs().max()) < 1e-9
    assert problem.metric(exact) < 1e-12


def test_pinn_residual_of_a_known_perturbation_in_both_forms():
    """u = u* + c·x(1 − x) in 1-D: Δu + f = −2c in the interior, u = 0 on the boundary; the
    autograd and the torch.func forms agree, with the problem's weights."""
    problem = fbp.poisson(1, tiny=True)
    c = 0.1
    bumped = _Exact(1, bump=c)
    z = problem.forward(bumped).squeeze(1).detach()
    interior = problem.inputs[:, 1] == 1
    s, n_int = z.numel(), int(interior.sum())
    torch.testing.assert_close(z[interior], torch.full((n_int,), -2 * c * math.sqrt(
        s / (2 * n_int)), dtype=DT), rtol=1e-9, atol=1e-9)
    assert float(z[~interior].detach().abs().max()) < 1e-12
    net = problem.make_model()
    params = {n: p.detach() for n, p in net.named_parameters()}
    torch.testing.assert_close(problem.functional(net)(params, problem.inputs),
                               problem.forward(net), rtol=1e-10, atol=1e-10)


def test_logistic_objective_has_sklearns_minimizer_and_scaling():
    """sklearn minimizes C·Σ CE + ½‖W‖²; with C = 1/(λ·n) that is C·n times our objective, so
    sklearn's solution is our stationary point, and the two objectives differ by that factor."""
    from sklearn.metrics import log_loss

    problem = fbp.logistic_digits(0, tiny=True, with_optimum=False)
    fitted = fbp.sklearn_logistic(problem, tol=1e-10)
    model = problem.make_model()
    load_flat(model, torch.cat([torch.tensor(fitted.coef_, dtype=DT).reshape(-1),
                                torch.tensor(fitted.intercept_, dtype=DT)]))
    loss = problem.mean_loss(model)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert max(float(g.abs().max()) for g in grads) < 1e-7
    spec = problem.sklearn
    n = spec["x"].shape[0]
    theirs = (spec["C"] * log_loss(spec["y"], fitted.predict_proba(spec["x"]), normalize=False)
              + 0.5 * float((fitted.coef_ ** 2).sum()))
    assert float(loss) * spec["C"] * n == pytest.approx(theirs, rel=1e-10)
    # the gradient check can fail: with ten times the L2 weight sklearn's point is not stationary
    heavier = dataclasses.replace(problem, l2=10 * problem.l2)
    grads = torch.autograd.grad(heavier.mean_loss(model), list(model.parameters()))
    assert max(float(g.abs().max()) for g in grads) > 1e-4


def test_every_problem_builds_and_its_closure_matches_its_objective():
    for name, build in fbp.PROBLEMS.items():
        problem = build(0, True)
        model = problem.make_model()
        assert all(p.dtype == DT for p in model.parameters()), name
        losses, outputs = problem.closure(model, with_outputs=True)()
        assert losses.shape == (outputs.shape[0],), name
        assert float(losses.mean()) == pytest.approx(problem.objective(model), rel=1e-12)
        params = {n: p.detach() for n, p in model.named_parameters()}
        fn = problem.functional(model)
        assert float(problem.objective_of(fn, params)) == pytest.approx(
            problem.objective(model), rel=1e-10), name
        assert math.isfinite(problem.metric(model)), name
    assert list(fbp.PROBLEMS) == list(SETTINGS["quick"].fb_problems)


# ----------------------------------------------------------------------------- runs and the case


def test_a_run_stops_at_its_budget_and_records_its_curve():
    problem = fbp.least_squares_mlp(0, tiny=True)
    run = run_method(problem, "lm", budget=0.05, evals=10, rates=None)
    assert run["status"] in ("budget", "converged")
    assert run["curve"][0][0] == 0.0 and all(t <= 0.05 for t, _ in run["curve"][1:])
    assert run["accuracy"] == pytest.approx(min(m for _, m in run["curve"][-1:]))
    assert time_to(run["curve"], math.inf, 0.05) == 0.0
    assert time_to(run["curve"], -1.0, 0.05) == math.inf


def test_a_method_that_raises_is_reported_not_propagated():
    problem = fbp.poisson(1, tiny=True)
    run = run_method(problem, "adam", budget=0.05, evals=5, rates=None, lr=float("nan"))
    assert run["status"] in ("non-finite", "budget") or run["status"].startswith("error")


def test_case_runs_end_to_end_in_a_tiny_configuration():
    s = dataclasses.replace(SETTINGS["smoke"], fb_problems=("least-squares", "logistic"),
                            fb_budget=0.05, fb_rounds=2, fb_evals=5)
    entry = case_full_batch(s, RATES, 0)
    assert entry["name"] == "full-batch" and len(entry["per_repeat"]["measured"]) == 2
    assert 0.0 <= entry["measured"] <= 1.0
    names = [row["name"] for row in entry["rows"]]
    for p in entry["problems"]:
        problem = fbp.PROBLEMS[p["problem"]](0, True)
        assert set(p["runs"]) == {m for m in METHODS if applies(m, problem)}
        for method, runs in p["runs"].items():
            assert any(n.startswith(f"{p['problem']}: {method}") for n in names)
            assert len(runs) == 2
            for run in runs:  # the time to target is read off the run's own curve
                assert run["seconds_to_target"] == time_to(run["curve"], p["target"], 0.05)
            assert method in entry["table"]
    lm_target = entry["problems"][0]["target"]
    assert lm_target == max(r["accuracy"] for r in entry["problems"][0]["runs"]["lm"])
    assert entry["problems"][1]["target"] == fbp.LOGISTIC_GAP_TARGET
    assert "scipy" in entry["problems"][0]["runs"] and "sklearn" in entry["problems"][1]["runs"]


def test_flat_parameters_round_trip():
    model = fbp.mlp((2, 3, 1)).to(DT)
    theta = torch.arange(13, dtype=DT)
    load_flat(model, theta)
    torch.testing.assert_close(flat_parameters(model), theta)


@pytest.mark.parametrize(("name", "expected"), [("least-squares", "trf"), ("poisson-2d", "lm")])
def test_scipy_peer_uses_minpack_when_it_applies_and_stops_when_told(name, expected):
    problem = fbp.PROBLEMS[name](0, True)
    run = run_method(problem, "scipy", budget=30.0, evals=10**7, rates=None, max_steps=3)
    assert run["scipy_method"] == expected  # MINPACK's lm needs at least as many rows as params
    assert run["status"] == "budget" and run["steps"] == 3  # three accepted iterates, then out
    assert [t for t, _ in run["curve"]] == sorted(t for t, _ in run["curve"])
    assert len(run["curve"]) == 4  # the start and the three iterates (each evaluated)
