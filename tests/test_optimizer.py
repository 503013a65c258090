import copy

import pytest
import torch
from brute_force import brute_force_curvature, closure_for
from torch import nn

from qnewton import QNewton
from qnewton.solvers import MachineRates

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


def make_problem(seed=0, n=96):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    return model, x, y


def mean_loss(model, x, y):
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


@pytest.mark.parametrize(
    "curvature,reg",
    # Block-diagonal Newton ignores cross-block curvature; the indefinite exact Hessian needs the
    # most damping to take full steps safely.
    [("fisher", 1e-2), ("ggn", 1e-1), ("hessian", 1.0)],
)
def test_newton_steps_decrease_the_loss(curvature, reg):
    model, x, y = make_problem()
    opt = QNewton(model.named_parameters(), curvature=curvature, reg=reg, lr=0.5, rates=RATES,
                  grouping="tensor")
    closure = closure_for(model, x, y, with_outputs=curvature == "ggn")
    start = mean_loss(model, x, y)
    for _ in range(8):
        opt.step(closure)
    assert mean_loss(model, x, y) < 0.8 * start
    records = opt.ledger.records
    assert len(records) == 8 * 4  # 4 parameter tensors, one block each
    assert {r.block for r in records} == {"0.weight", "0.bias", "2.weight", "2.bias"}
    summary = opt.ledger.summary()
    assert summary["quantum_solves"] + summary["classical_solves"] == len(records)


def test_module_grouping_makes_one_block_per_layer():
    model, x, y = make_problem()
    opt = QNewton(model.named_parameters(), grouping="module", rates=RATES)
    opt.step(closure_for(model, x, y))
    assert sorted(r.block for r in opt.ledger.records) == ["0", "2"]
    assert {r.n for r in opt.ledger.records} == {4 * 6 + 6, 6 * 3 + 3}


def test_quantum_policy_routes_everything_to_the_emulated_qlsa():
    model, x, y = make_problem()
    opt = QNewton(model.parameters(), policy="quantum", lr=0.5, rates=RATES, grouping="tensor")
    start = mean_loss(model, x, y)
    for _ in range(5):
        opt.step(closure_for(model, x, y))
    assert all(r.choice == "quantum" for r in opt.ledger.records)
    assert opt.ledger.modeled_quantum_seconds > 0
    assert opt.ledger.emulation_seconds > 0
    assert mean_loss(model, x, y) < start


def test_state_dict_round_trip_resumes_identically():
    model, x, y = make_problem()
    opt = QNewton(model.parameters(), momentum=0.5, clip=0.5, lr=0.5, rates=RATES,
                  grouping="tensor")
    for _ in range(2):
        opt.step(closure_for(model, x, y))
    twin = copy.deepcopy(model)
    resumed = QNewton(twin.parameters(), momentum=0.5, clip=0.5, lr=0.5, rates=RATES,
                      grouping="tensor")
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))  # as if saved and re-loaded
    assert resumed.step_count == opt.step_count == 2
    opt.step(closure_for(model, x, y))
    resumed.step(closure_for(twin, x, y))
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


def test_non_finite_loss_leaves_parameters_untouched_and_is_reported():
    model, x, y = make_problem()
    before = [p.detach().clone() for p in model.parameters()]
    opt = QNewton(model.parameters(), rates=RATES, grouping="tensor")

    def closure():
        return nn.functional.cross_entropy(model(x), y, reduction="none") * float("nan")

    loss = opt.step(closure)
    assert torch.isnan(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert opt.ledger.events[0]["kind"] == "non-finite-loss"
    assert opt.step_count == 0


def test_failed_descent_check_retries_then_falls_back_to_a_gradient_step(monkeypatch):
    model, x, y = make_problem()
    opt = QNewton(model.parameters(), max_retries=2, rates=RATES, grouping="tensor")
    real_run = opt.scheduler.run

    def ascent(system, b, decision, key=()):
        result = real_run(system, b, decision, key)
        result.x = -result.x  # turns the Newton step into an ascent direction
        return result

    monkeypatch.setattr(opt.scheduler, "run", ascent)
    start = mean_loss(model, x, y)
    opt.step(closure_for(model, x, y))
    records = opt.ledger.records
    assert len(records) == 4 * 3  # each block: first try + 2 retries
    assert [r.fallback for r in records[:3]] == ["retry", "retry", "gradient"]
    assert records[1].reg == pytest.approx(10 * records[0].reg)
    assert any(e["kind"] == "gradient-fallback" for e in opt.ledger.events)
    assert mean_loss(model, x, y) < start  # the fallback is a descent step


def test_blocks_over_the_memory_budget_take_a_reported_gradient_step_without_matrix_free():
    model, x, y = make_problem()
    opt = QNewton(model.named_parameters(), curvature="hessian", max_block_bytes=300,
                  matrix_free=False, rates=RATES, grouping="tensor")
    opt.step(closure_for(model, x, y))
    skipped = {e["block"] for e in opt.ledger.events if e["kind"] == "block-over-budget"}
    assert skipped == {"0.weight", "2.weight"}  # 24² and 18² float64 exceed 300 bytes, 6² does not
    assert {r.block for r in opt.ledger.records} == {"0.bias", "2.bias"}
    summary = opt.ledger.summary()
    # the summary says who did the work: 24 + 18 parameters by gradient steps, 6 + 3 by Newton
    assert summary["parameter_updates"]["fallback"] == 24 + 18
    assert summary["parameter_updates"]["newton"] == 6 + 3
    assert summary["fallback_reasons"] == {"over-budget": 2}
    assert summary["updates_by_block"]["0.weight"]["fallback"] == 1


def test_blocks_over_the_memory_budget_are_solved_matrix_free_by_default():
    model, x, y = make_problem()
    opt = QNewton(model.named_parameters(), curvature="hessian", max_block_bytes=300, reg=1.0,
                  rates=RATES, grouping="tensor")
    opt.step(closure_for(model, x, y))
    free = {e["block"] for e in opt.ledger.events if e["kind"] == "block-matrix-free"}
    assert free == {"0.weight", "2.weight"}
    records = {r.block: r for r in opt.ledger.records}
    assert set(records) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for name in free:
        assert records[name].representation == "matrix-free"
        assert records[name].solver == "cg" and records[name].fallback is None
        assert records[name].kappa_kind == "not-estimated"
        assert records[name].kappa_method == records[name].quantum_rejection == "matrix-free"
    summary = opt.ledger.summary()
    assert summary["parameter_updates"]["newton"] == 24 + 6 + 18 + 3
    assert summary["parameter_updates"]["newton_matrix_free"] == 24 + 18
    assert summary["parameter_updates"]["fallback"] == 0
    assert summary["newton_parameter_fraction"] == 1.0


def test_invalid_hyper_parameters_name_the_argument():
    model, _, _ = make_problem()
    cases = [
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"curvature": "bfgs"}, "curvature must be one of"),
        ({"momentum": 1.0}, "momentum must be a finite number >= 0 and < 1"),
        ({"clip": 0.0}, "clip must be a finite number > 0"),
        ({"policy": "fastest"}, "policy must be one of"),
        ({"hardware": "abacus"}, "abacus"),
        ({"reg": -1.0}, "reg"),
        ({"grouping": "layer"}, "grouping must be one of"),
        ({"max_block_bytes": 0}, "^max_block_bytes must be an integer >= 1, got 0$"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            QNewton(model.parameters(), rates=RATES, **kwargs)
    opt = QNewton(model.parameters(), rates=RATES, grouping="tensor")
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()


def test_factor_blocks_too_big_for_dense_solvers_use_woodbury_or_fall_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 10), nn.Tanh(), nn.Linear(10, 3))
    x, y = torch.randn(32, 20), torch.randint(0, 3, (32,))
    budget = 100_000  # 200×200 float64 = 320 kB dense; the 32×200 factor is 51 kB
    dense_only = QNewton(model.named_parameters(), policy="classical", rates=RATES,
                         classical_solvers=("cholesky",), max_block_bytes=budget, grouping="tensor")
    dense_only.step(closure_for(model, x, y))
    no_solver = [e for e in dense_only.ledger.events if e["kind"] == "no-solver"]
    assert [e["block"] for e in no_solver] == ["0.weight"]
    # the budget is named as the caller named it
    assert "max_block_bytes=100000" in no_solver[0]["message"]
    assert "max_dense_bytes" not in no_solver[0]["message"]
    assert "0.weight" not in {r.block for r in dense_only.ledger.records}

    with_woodbury = QNewton(model.named_parameters(), policy="classical", rates=RATES,
                            classical_solvers=("cholesky", "woodbury"), max_block_bytes=budget,
                            grouping="tensor")
    with_woodbury.step(closure_for(model, x, y))
    solvers = {r.block: r.solver for r in with_woodbury.ledger.records}
    assert solvers["0.weight"] == "woodbury"
    assert not [e for e in with_woodbury.ledger.events if e["kind"] == "no-solver"]


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher"])
def test_step_equals_the_dense_newton_step_block_by_block(kind):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    lr, reg = 0.7, 0.3
    # the paper's update θ ← θ − lr·A⁻¹g: the fixed step rule
    opt = QNewton(model.named_parameters(), step_rule="fixed", lr=lr, curvature=kind, reg=reg,
                  policy="classical",
                  classical_solvers=("cholesky",), grouping="module", rates=RATES)
    blocks = {"0": [model[0].weight, model[0].bias], "2": [model[2].weight, model[2].bias]}
    expected = {}
    for name, params in blocks.items():
        h = brute_force_curvature(kind, model, x, y, params)
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        g = torch.cat([p.grad.reshape(-1) for p in params])
        expected[name] = (h, g, torch.cat([p.detach().reshape(-1) for p in params]))
    opt.step(closure_for(model, x, y, with_outputs=kind == "ggn"))
    records = {r.block: r for r in opt.ledger.records}
    for name, params in blocks.items():
        h, g, theta = expected[name]
        record = records[name]
        if kind != "hessian":  # the paper's λ = reg·max|H_ij|, no repair needed for PSD blocks
            assert record.reg == pytest.approx(reg * float(h.abs().max()), rel=1e-10)
            assert record.shift == record.reg
        a = h + record.shift * torch.eye(h.shape[0], dtype=torch.float64)
        reference = theta - lr * torch.linalg.solve(a, g)
        got = torch.cat([p.detach().reshape(-1) for p in params])
        torch.testing.assert_close(got, reference, rtol=1e-10, atol=1e-12)


def test_constructor_stores_only_and_calibrates_lazily(monkeypatch):
    calls = []
    monkeypatch.setattr("qnewton.calibration.calibrate", lambda: calls.append(1) or RATES)
    model, x, y = make_problem()
    opt = QNewton(model.parameters(), grouping="tensor")
    assert calls == []  # no probe in the constructor
    opt.step(closure_for(model, x, y))
    opt.step(closure_for(model, x, y))
    assert calls == [1]


def test_module_grouping_keeps_top_level_weight_and_bias_together():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)  # logistic regression: its own weight and bias, no submodule
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    opt = QNewton(model.named_parameters(), grouping="module", rates=RATES)
    opt.step(closure_for(model, x, y))
    assert [(r.block, r.n) for r in opt.ledger.records] == [("<root>", 15)]
    with pytest.raises(ValueError, match="named_parameters"):
        QNewton(model.parameters(), grouping="module", rates=RATES)
