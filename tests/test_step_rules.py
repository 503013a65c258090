"""QNewton's step rules (issue 9): convergence at the defaults, quadratic convergence, the
fixed paper mode, non-finite handling and torch.optim conformance."""

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from brute_force import brute_force_curvature, closure_for
from torch import nn

from qnewton import QNewton
from qnewton.accounting import Ledger
from qnewton.curvature import CURVATURES, CurvatureConfig, compute_curvature
from qnewton.curvature.params import blocks_from_module
from qnewton.distributed.step import StepPath
from qnewton.solvers import MachineRates
from qnewton.stepping import (
    ClosureError,
    NonFiniteError,
    adapt_damping,
    predicted_reduction,
    step_size,
)
from qnewton.stepping.adaptive import coupled_scales, rows_quadratic
from qnewton.stepping.rule import Move, StepContext

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


class GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        out, _ = self.gru(x.reshape(x.shape[0], 4, 3))
        return self.head(out[:, -1])


def _models():
    return {
        "tanh-mlp": (lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)), "ggn",
                     "ce", 6),
        "cnn": (lambda: nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3), nn.ReLU(),
                                      nn.Flatten(), nn.Linear(8, 3)), "fisher", "ce", 16),
        "mse-regression": (lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1)),
                           "ggn", "mse", 6),
        "batchnorm-mlp": (lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                                                nn.Linear(8, 3)), "hessian", "ce", 6),
        "gru": (GRUNet, "fisher", "ce", 12),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_defaults_lower_the_loss_on_non_convex_models(name):
    # The models of the issue, where the full block-wise Newton step at lr 1.0 diverged.
    factory, curvature, loss_kind, inputs = _models()[name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, inputs, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    target = x[:, :2].sum(dim=1)
    torch.manual_seed(0)
    model = factory()
    opt = QNewton(model.named_parameters(), curvature=curvature, rates=RATES)

    def losses_and_outputs():
        out = model(x)
        if loss_kind == "mse":
            return (out.squeeze(1) - target) ** 2, out
        return nn.functional.cross_entropy(out, y, reduction="none"), out

    def closure():
        losses, out = losses_and_outputs()
        return (losses, out) if curvature == "ggn" else losses

    with torch.no_grad():
        start = float(losses_and_outputs()[0].mean())
    seen = [float(opt.step(closure)) for _ in range(4)]
    with torch.no_grad():
        end = float(losses_and_outputs()[0].mean())
    assert all(math.isfinite(v) for v in seen)
    assert seen[0] == pytest.approx(start)
    # never worse (rejected steps keep θ), strictly better after the few steps
    assert all(b <= a for a, b in zip([*seen, end], [*seen, end][1:], strict=False))
    assert end < 0.95 * start
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rule = opt.ledger.step_rule
    assert [r["step"] for r in rule] == [0, 1, 2, 3]
    assert all(r["damping"] > 0 and 0 <= r["step_size"] <= 1 for r in rule)


def test_quadratic_convergence_to_sklearns_optimum_with_the_exact_hessian():
    sklearn = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 4, generator=g, dtype=torch.float64)
    logits = x @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64) + 0.3
    y = (torch.rand(200, generator=g, dtype=torch.float64) < torch.sigmoid(logits)).double()
    ref = sklearn.LogisticRegression(C=np.inf, tol=1e-14, max_iter=10_000).fit(
        x.numpy(), y.numpy())
    z = x.numpy() @ ref.coef_[0] + ref.intercept_[0]
    optimum = float(np.mean(np.logaddexp(0.0, z) - y.numpy() * z))

    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()  # weight and bias: one "<root>" block under module grouping
    opt = QNewton(model.named_parameters(), curvature="hessian", grouping="module", reg=0.0,
                  damping=1e-12, rates=RATES)

    def closure():
        return nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y,
                                                              reduction="none")

    errors = [float(opt.step(closure)) - optimum for _ in range(8)]
    assert [r.block for r in opt.ledger.records][:1] == ["<root>"]
    with torch.no_grad():
        final = float(closure().mean())
    assert abs(final - optimum) < 1e-8
    theta = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])
    want = torch.tensor([*ref.coef_[0], ref.intercept_[0]], dtype=torch.float64)
    torch.testing.assert_close(theta, want, rtol=0, atol=1e-6)
    # quadratic: near the optimum each error is at most a constant times the previous squared
    near = [(a, b) for a, b in zip(errors, errors[1:], strict=False) if 1e-10 < a < 1e-2]
    assert len(near) >= 2
    assert all(b <= 20.0 * a * a for a, b in near)


def test_fixed_mode_is_the_papers_update_and_adaptive_the_scaled_one(monkeypatch):
    # the adaptive rule's absolute floor set to 0, so that only the relative damping is compared
    monkeypatch.setattr("qnewton.stepping.adaptive.ETA_MINI_BATCH", 0.0)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,))
    twin = copy.deepcopy(model)
    fixed = QNewton(model.named_parameters(), step_rule="fixed", lr=1.0, reg=0.3,
                    curvature="fisher", rates=RATES)
    adaptive = QNewton(twin.named_parameters(), reg=0.3 - 1e-2, damping=1e-2,
                       curvature="fisher", rates=RATES)
    start = [p.detach().clone() for p in model.parameters()]
    fixed.step(closure_for(model, x, y))
    adaptive.step(closure_for(twin, x, y))
    # same damped block directions (reg + λ = 0.3); adaptive moves α of the way along them
    alpha = adaptive.ledger.step_rule[0]["step_size"]
    assert 0 < alpha <= 1
    for p0, p, q in zip(start, model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(q - p0, alpha * (p - p0), rtol=1e-9, atol=1e-12)
    assert fixed.ledger.step_rule == []


def _tanh_mlp_curvature(kind, seed):
    """A [3, 4, 2] tanh MLP on 9 samples: the model, its parameters, the brute-force whole-model
    curvature of ``kind``, the outputs and the per-sample cross-entropies."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randint(0, 2, (9,))
    params = list(model.parameters())
    c = brute_force_curvature(kind, model, x, y, params)
    out = model(x)
    return model, params, c, out, nn.functional.cross_entropy(out, y, reduction="none")


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher"])
def test_full_quadratic_matches_the_brute_force_whole_model_curvature(kind):
    model, params, c, out, losses = _tanh_mlp_curvature(kind, seed=2)
    delta = torch.randn(c.shape[0], dtype=torch.float64)
    got = CURVATURES[kind].quadratic(losses, out, params, delta)
    assert got == pytest.approx(float(delta @ c @ delta), rel=1e-10)


@pytest.mark.parametrize("kind", ["ggn", "fisher"])
def test_quadratic_from_aligned_rows_is_the_whole_model_one(kind):
    # Σ_b F_b Δ_b over tensor blocks (structured and explicit rows) carries the cross-block
    # terms: it must equal Δᵀ C Δ of the brute-force whole-model curvature.
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randint(0, 2, (9,))
    params = list(model.parameters())
    c = brute_force_curvature(kind, model, x, y, params)
    out = model(x)
    losses = nn.functional.cross_entropy(out, y, reduction="none")
    blocks = blocks_from_module(model, "tensor")
    result = compute_curvature(losses, blocks, CurvatureConfig(kind=kind), out)
    assert {type(b).__name__ for b in result.blocks} == {"StructuredFactorBlock", "FactorBlock"}
    delta = torch.randn(c.shape[0], dtype=torch.float64)
    moves = [Move(b, 0.5, d.reshape(b.params[0].shape) if len(b.params) == 1 else d)
             for b, d in zip(blocks, delta.split([b.numel for b in blocks]), strict=True)]
    ctx = StepContext(0, None, losses, out, losses.mean(), {}, CURVATURES[kind],
                      dict(zip(blocks, result.blocks, strict=True)), None, None,
                      model_rows=True)
    assert rows_quadratic(ctx, moves) == pytest.approx(float(0.25 * delta @ c @ delta), rel=1e-10)
    # rows of a kind substituted for the step's (the Monte-Carlo GGN's draw): not used
    assert rows_quadratic(replace(ctx, model_rows=False), moves) is None
    assert rows_quadratic(replace(ctx, kind=CURVATURES["ggn-mc"]), moves) is None


def test_one_block_with_an_l2_term_takes_its_quadratic_from_its_rows():
    # The GGN of the cross-entropy plus the L2 term's Hessian (its own rows in the block): the
    # rows' ΔᵀCΔ must equal the brute-force one, the kind's double-backward figure too; with
    # two blocks the term's rows align with nothing, and the rows are not used.
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randint(0, 2, (9,))
    params = list(model.parameters())
    l2 = 0.3
    c = brute_force_curvature("ggn", model, x, y, params)
    penalty = torch.cat([torch.full((p.numel(),), l2 if p.ndim == 2 else 0.0,
                                    dtype=torch.float64) for p in params])
    out = model(x)
    losses = (nn.functional.cross_entropy(out, y, reduction="none")
              + 0.5 * l2 * sum(p.square().sum() for p in params if p.ndim == 2))
    whole = blocks_from_module(model, "model")
    result = compute_curvature(losses, whole, CurvatureConfig(kind="ggn"), out)
    assert result.bypass_covered
    delta = torch.randn(c.shape[0], dtype=torch.float64)
    truth = float(delta @ (c + torch.diag(penalty)) @ delta)
    ctx = StepContext(0, None, losses, out, losses.mean(), {}, CURVATURES["ggn"],
                      dict(zip(whole, result.blocks, strict=True)), None, None, bypass=True,
                      model_rows=True, bypass_covered=True)
    assert rows_quadratic(ctx, [Move(whole[0], 1.0, delta)]) == pytest.approx(truth, rel=1e-10)
    assert CURVATURES["ggn"].quadratic(losses, out, params, delta, bypass=True) == \
        pytest.approx(truth, rel=1e-10)
    assert rows_quadratic(replace(ctx, bypass_covered=False), [Move(whole[0], 1.0, delta)]) \
        is None
    tensor = blocks_from_module(model, "tensor")
    split = compute_curvature(losses, tensor, CurvatureConfig(kind="ggn"), out)
    moves = [Move(b, 1.0, d.reshape(b.params[0].shape))
             for b, d in zip(tensor, delta.split([b.numel for b in tensor]), strict=True)]
    assert rows_quadratic(replace(ctx, local_blocks=dict(zip(tensor, split.blocks,
                                                               strict=True))), moves) is None


def test_the_optimizer_gives_the_rule_its_rows(monkeypatch):
    # QNewton's steps take ΔᵀCΔ from the blocks' rows, never from a double-backward product:
    # tensor blocks (with their coupled scales) and one whole-model block with an L2 term.
    from qnewton.curvature.ggn import GGNCurvature

    monkeypatch.setattr(GGNCurvature, "quadratic",
                        lambda *a, **k: pytest.fail("a double-backward ΔᵀCΔ"))
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))

    def closure(l2):
        def losses_and_outputs():
            out = model(x)
            penalty = l2 * sum(p.square().sum() for p in model.parameters() if p.ndim == 2)
            return nn.functional.cross_entropy(out, y, reduction="none") + penalty, out
        return losses_and_outputs

    for grouping, l2 in (("tensor", 0.0), ("model", 1e-2)):
        opt = QNewton(model.named_parameters(), rates=RATES, grouping=grouping,
                      curvature="ggn")
        for _ in range(2):
            opt.step(closure(l2))
        assert opt.last_step_info["accepted"]
        assert ("block_scales" in opt.last_step_info) == (grouping == "tensor")


@pytest.mark.parametrize("kind", ["ggn", "fisher"])
def test_coupled_block_scales_minimize_the_damped_model_over_the_block_steps(kind):
    # Block steps Δ_b = −(C_bb + s_b I)⁻¹ g_b from the brute-force curvature: the scales must
    # be the minimizer of hᵀa + ½aᵀ(Q + diag(s_b‖Δ_b‖²))a, Q_bc = Δ_bᵀ C Δ_c with the whole
    # model's C (cross-block terms), clipped to [0, 1]; and ΔᵀCΔ that of the scaled step.
    model, params, c, out, losses = _tanh_mlp_curvature(kind, seed=3)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses.mean(), params,
                                                                  retain_graph=True)])
    blocks = blocks_from_module(model, "tensor")
    result = compute_curvature(losses, blocks, CurvatureConfig(kind=kind), out)
    sizes = [b.numel for b in blocks]
    shifts = [0.05, 0.3, 0.01, 0.2]
    steps, grads, start = [], {}, 0
    for b, n, shift in zip(blocks, sizes, shifts, strict=True):
        cb, gb = c[start:start + n, start:start + n], grad[start:start + n]
        steps.append(-torch.linalg.solve(cb + shift * torch.eye(n, dtype=torch.float64), gb))
        grads[b] = gb
        start += n
    moves = [Move(b, 1.0, d.reshape(b.params[0].shape)) for b, d in zip(blocks, steps,
                                                                       strict=True)]
    ctx = StepContext(0, None, losses, out, losses.mean(), grads, CURVATURES[kind],
                      dict(zip(blocks, result.blocks, strict=True)), StepPath(), Ledger(),
                      model_rows=True)
    scaled, curvature, a = coupled_scales(ctx, moves, 9)
    full = torch.zeros(len(blocks), grad.numel(), dtype=torch.float64)
    start = 0
    for i, (d, n) in enumerate(zip(steps, sizes, strict=True)):
        full[i, start:start + n] = d
        start += n
    q = full @ c @ full.T
    h = torch.stack([grads[b] @ d for b, d in zip(blocks, steps, strict=True)])
    damped = q + torch.diag(torch.tensor([s * float(d @ d) for s, d in zip(shifts, steps,
                                                                          strict=True)]))
    truth = torch.linalg.solve(damped, -h).clamp(0.0, 1.0)
    # the rule recovers s_b‖Δ_b‖² as −h_b − Q_bb, a difference that loses about as many digits
    # as h_b exceeds it (×100 at s = 0.01 here), and the 4×4 solve loses a few more
    torch.testing.assert_close(a, truth, rtol=1e-6, atol=1e-10)
    assert not torch.allclose(a, torch.ones_like(a))  # the blocks couple: some are shortened
    assert curvature == pytest.approx(float(a @ q @ a), rel=1e-9)
    for m, ab in zip(scaled, a, strict=True):
        assert m.lr == pytest.approx(float(ab))
    # one block alone: its damped Newton step, unscaled (the caller's plain path)
    assert coupled_scales(ctx, moves[:1], 9) is None


def test_step_size_and_damping_rules():
    assert step_size(-2.0, 4.0, 1.0) == 0.5  # α* = −gᵀΔ/ΔᵀCΔ
    assert step_size(-8.0, 4.0, 1.0) == 1.0  # capped
    assert step_size(-1.0, -3.0, 1.0) == 1.0  # no minimum along Δ: the cap, backtracking decides
    assert predicted_reduction(0.5, -2.0, 4.0) == pytest.approx(-0.5)
    assert adapt_damping(1.0, 0.1) == 1.5  # Martens 2010 §4.1: ρ < 1/4 → ×3/2
    assert adapt_damping(1.0, 0.9) == pytest.approx(2 / 3)  # ρ > 3/4 → ×2/3
    assert adapt_damping(1.0, 0.5) == 1.0
    assert adapt_damping(1.0, math.nan) == 1.5  # a rejected step counts as ρ < 1/4
    assert adapt_damping(1.0, 0.9, floor=0.8) == 0.8  # never below the initial damping


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)), x, y


def test_repeated_non_finite_steps_raise_naming_the_step():
    model, x, y = _problem()
    opt = QNewton(model.parameters(), rates=RATES, max_nonfinite=3)

    def closure():
        return nn.functional.cross_entropy(model(x), y, reduction="none") * float("nan")

    assert math.isnan(float(opt.step(closure)))
    assert math.isnan(float(opt.step(closure)))
    with pytest.raises(NonFiniteError, match=r"step 0: loss is nan.*3 non-finite"):
        opt.step(closure)
    strict = QNewton(model.parameters(), rates=RATES, on_nonfinite="raise")
    with pytest.raises(NonFiniteError, match="on_nonfinite='raise'"):
        strict.step(closure)
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        QNewton(model.parameters(), on_nonfinite="ignore")


def test_fixed_mode_parameters_that_become_non_finite_raise_naming_the_block():
    model, x, y = _problem()
    opt = QNewton(model.named_parameters(), step_rule="fixed", lr=1e38, reg=1e-12,
                  grouping="tensor", rates=RATES)
    with pytest.raises(NonFiniteError, match=r"step 0: the parameters of block '0\.weight'"):
        opt.step(closure_for(model, x, y))


def test_add_param_group_and_parameters_frozen_after_construction():
    model, x, y = _problem()
    opt = QNewton([("0.weight", model[0].weight), ("0.bias", model[0].bias)], rates=RATES,
                  grouping="tensor")
    opt.add_param_group({"params": [("2.weight", model[2].weight), ("2.bias", model[2].bias)],
                         "reg": 1e-2})
    assert opt.param_groups[1]["reg"] == 1e-2 and opt.param_groups[1]["lr"] == 1.0
    opt.step(closure_for(model, x, y))
    assert {r.block for r in opt.ledger.records} == {"0.weight", "0.bias", "2.weight", "2.bias"}

    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    opt.step(closure_for(model, x, y))
    assert torch.equal(model[0].weight, frozen)
    assert {r.block for r in opt.ledger.records if r.step == 1} == {"0.bias", "2.weight",
                                                                     "2.bias"}
    unnamed = QNewton(model[2].parameters(), rates=RATES, grouping="tensor")
    unnamed.add_param_group({"params": [model[0].bias]})
    unnamed.step(closure_for(model, x, y))
    assert len({r.block for r in unnamed.ledger.records}) == 3
    whole = QNewton(model[2].parameters(), rates=RATES)  # "auto": one block per group
    whole.add_param_group({"params": [model[0].bias]})
    whole.step(closure_for(model, x, y))
    assert {r.block for r in whole.ledger.records} == {"<model>", "<model>[group1]"}


def test_grad_holds_the_gradient_the_step_used():
    model, x, y = _problem()
    twin = copy.deepcopy(model)
    nn.functional.cross_entropy(twin(x), y).backward()
    opt = QNewton(model.parameters(), rates=RATES)
    opt.step(closure_for(model, x, y))
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


def test_state_dict_carries_the_ledger_and_the_damping():
    model, x, y = _problem()
    opt = QNewton(model.parameters(), rates=RATES)
    for _ in range(3):
        opt.step(closure_for(model, x, y))
    twin = copy.deepcopy(model)
    resumed = QNewton(twin.parameters(), rates=RATES)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert resumed.ledger.summary()["classical_solves"] == opt.ledger.summary()[
        "classical_solves"] > 0
    assert resumed.ledger.measured_seconds == opt.ledger.measured_seconds
    assert resumed.ledger.step_rule == opt.ledger.step_rule
    assert resumed.step_rule.state_dict() == opt.step_rule.state_dict()
    opt.step(closure_for(model, x, y))
    resumed.step(closure_for(twin, x, y))
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_closure_that_calls_backward_is_told_what_to_return():
    model, x, y = _problem()
    opt = QNewton(model.parameters(), rates=RATES)

    def lbfgs_habit():
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with pytest.raises(ClosureError, match=r"called backward\(\).*per-sample losses of shape"):
        opt.step(lbfgs_habit)
    with pytest.raises(ClosureError, match="per-sample losses"):
        opt.step(lambda: nn.functional.cross_entropy(model(x), y).item())


@pytest.mark.parametrize("with_outputs", [False, True], ids=["losses", "losses-outputs"])
def test_a_scalar_mean_loss_is_told_to_return_the_losses_unreduced(with_outputs):
    """The habit of torch.optim closures, a mean loss with its graph: refused before any update,
    by a ClosureError naming reduction='none', with or without the outputs (Fisher, GGN)."""
    model, x, y = _problem()
    opt = QNewton(model.parameters(), rates=RATES)
    before = [p.detach().clone() for p in model.parameters()]

    def mean_loss():
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        return (loss, out) if with_outputs else loss

    with pytest.raises(ClosureError, match=r"got a scalar .*reduction='none'"):
        opt.step(mean_loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    opt.step(closure_for(model, x, y, with_outputs=with_outputs))  # and then it steps


def test_an_empty_batch_is_refused_and_moves_nothing():
    model, x, y = _problem()
    opt = QNewton(model.parameters(), rates=RATES)
    before = [p.detach().clone() for p in model.parameters()]
    empty = closure_for(model, x[:0], y[:0])
    with pytest.raises(ClosureError, match="no losses"):
        opt.step(empty)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_ggn_refuses_a_loss_term_that_bypasses_the_outputs_only_if_left_out(monkeypatch):
    """A penalty's own curvature is added to the GGN (qnewton.curvature.bypass), so the step is
    taken; where it cannot be (here: blocks over the bypass size limit) the step is refused."""
    from qnewton.curvature import bypass

    model, x, y = _problem()

    def with_penalty():
        out = model(x)
        penalty = 1e-2 * sum(p.square().sum() for p in model.parameters())
        return nn.functional.cross_entropy(out, y, reduction="none") + penalty, out

    QNewton(model.parameters(), curvature="ggn", rates=RATES).step(with_penalty)
    opt = QNewton(model.parameters(), curvature="ggn", rates=RATES)
    monkeypatch.setattr(bypass, "MAX_BYPASS_N", 1)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ClosureError, match="other than through the returned outputs"):
        opt.step(with_penalty)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    opt.step(closure_for(model, x, y, with_outputs=True))  # the plain GGN closure is accepted


def test_fixed_mode_is_the_papers_update_against_a_brute_force_reference():
    # The paper mode (lr 0.3, reg 5e-3, clip 0.1) on a digits MLP over alternating mini-batches,
    # against the paper's update written out here from scratch: per tensor block, the empirical
    # Fisher F = GᵀG/S of per-sample gradients (one backward pass per sample), A = F +
    # reg·max|F|·I, Δ = clip(−A⁻¹g, ±0.1) by a dense solve, θ ← θ + lr·Δ.
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data[:256] / 16.0, dtype=torch.float64)
    y = torch.tensor(d.target[:256])

    def net():  # float64, so that both sides agree to round-off
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                             nn.Linear(16, 10)).double()

    model, reference = net(), net()
    opt = QNewton(model.named_parameters(), step_rule="fixed", lr=0.3, reg=5e-3, clip=0.1,
                  policy="classical", grouping="tensor", rates=RATES)
    for i in range(4):
        xb, yb = x[(i % 2) * 128:(i % 2 + 1) * 128], y[(i % 2) * 128:(i % 2 + 1) * 128]
        opt.step(lambda xb=xb, yb=yb: nn.functional.cross_entropy(model(xb), yb,
                                                                  reduction="none"))
        losses = nn.functional.cross_entropy(reference(xb), yb, reduction="none")
        params = list(reference.parameters())
        rows = [torch.autograd.grad(losses[s], params, retain_graph=True)
                for s in range(losses.numel())]
        with torch.no_grad():
            for j, p in enumerate(params):
                g_s = torch.stack([r[j].reshape(-1) for r in rows])
                fisher = g_s.T @ g_s / g_s.shape[0]
                a = fisher + 5e-3 * fisher.abs().max() * torch.eye(p.numel(), dtype=torch.float64)
                step = (-torch.linalg.solve(a, g_s.mean(dim=0))).clamp(-0.1, 0.1)
                p.add_(step.view(p.shape), alpha=0.3)
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-11)
