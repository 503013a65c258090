"""Newton where Newton wins (issue 17): at the defaults, full-batch problems converge like Newton
(the batch regime read off the losses, damping that vanishes, the whole model as one block), a
PINN closure steps, trial evaluations leave BatchNorm statistics alone, and a direction the loss
cannot see is never moved without bound."""

import math

import pytest
import torch
from torch import nn

from qnewton import QNewton
from qnewton.bench.full_batch_problems import least_squares_mlp, logistic_digits, poisson
from qnewton.bench.levenberg_marquardt import LevenbergMarquardt
from qnewton.solvers import MachineRates
from qnewton.stepping.adaptive import ETA_MINI_BATCH
from qnewton.stepping.trial import TrialEvaluator, buffers_restored

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


def test_l2_logistic_regression_reaches_sklearns_optimum_quadratically():
    # A convex problem: multinomial logistic regression with an L2 term on digits, its closure
    # returning (losses, outputs) with the penalty outside the outputs. At the defaults: the GGN
    # (here the exact Hessian of the cross-entropy) plus the penalty's own curvature, one block,
    # damping that vanishes once the regime is full-batch: Newton's method.
    problem = logistic_digits(tiny=True)
    model = problem.make_model()
    opt = QNewton(model.named_parameters(), rates=RATES)
    closure = problem.closure(model, with_outputs=True)
    gaps = []
    for _ in range(15):
        opt.step(closure)
        gaps.append(problem.metric(model))
        if gaps[-1] < 1e-11:
            break
    assert gaps[-1] < 1e-10, gaps
    # quadratic convergence: the last decades fall in a handful of steps
    first_small = next(i for i, g in enumerate(gaps) if g < 1e-3)
    assert len(gaps) - first_small <= 5, gaps
    assert opt.last_step_info["regime"] == "full-batch"


def test_steps_at_a_minimum_to_round_off_keep_the_damping_and_the_parameters():
    """Past the optimum of a convex problem no trial can resolve a decrease: the extra steps
    are recorded as stationary, move nothing, reject nothing and leave the damping as it was
    (rejecting round-off noise used to raise it ×ν per step, to 4e5 in ten steps)."""
    problem = logistic_digits(tiny=True)
    model = problem.make_model()
    opt = QNewton(model.named_parameters(), rates=RATES)
    closure = problem.closure(model, with_outputs=True)
    for _ in range(25):
        opt.step(closure)
        if opt.last_step_info.get("stationary"):
            break
    assert opt.last_step_info.get("stationary"), "no step found the minimum to round-off"
    assert problem.metric(model) < 1e-12
    damping, theta = opt.step_rule.damping, [p.detach().clone() for p in model.parameters()]
    for _ in range(4):
        opt.step(closure)
        assert opt.last_step_info["stationary"] and opt.last_step_info["step_size"] == 0.0
    assert opt.step_rule.damping == damping
    assert all(torch.equal(a, p) for a, p in zip(theta, model.parameters(), strict=True))
    assert not [e for e in opt.ledger.events if e["kind"] == "step-rejected"]


@pytest.mark.parametrize("make", [lambda: least_squares_mlp(tiny=True),
                                  lambda: poisson(1, tiny=True)], ids=["mlp", "pinn-1d"])
def test_full_batch_defaults_keep_up_with_a_whole_model_levenberg_marquardt(make):
    # The same number of iterations of the bench's whole-model LM reference (torch.func
    # Jacobians, Nielsen damping) from the same start: QNewton at its defaults lands within a
    # factor 3 of it (the old defaults ended 3–6 decades behind).
    problem = make()
    model, reference = problem.make_model(), problem.make_model()
    opt = QNewton(model.named_parameters(), rates=RATES)
    closure = problem.closure(model, with_outputs=True)
    lm = LevenbergMarquardt(problem, reference)
    for _ in range(30):
        opt.step(closure)
        lm.step()
    lm.write_to(reference)
    assert problem.metric(model) <= 3 * problem.metric(reference)


def test_a_pinn_closure_steps_at_the_defaults():
    # The closure differentiates the network with respect to its inputs (create_graph=True):
    # its trial evaluations need autograd, which a no_grad trial refused before.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    xs = torch.linspace(0, 1, 24, dtype=torch.float64).unsqueeze(1)
    f = math.pi**2 * torch.sin(math.pi * xs).squeeze(1)
    ends = torch.tensor([[0.0], [1.0]], dtype=torch.float64)

    def closure():
        x = xs.clone().requires_grad_(True)
        u = model(x)
        du = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
        d2u = torch.autograd.grad(du.sum(), x, create_graph=True)[0]
        res = torch.cat([(-d2u - f.unsqueeze(1)), model(ends)]).squeeze(1).unsqueeze(1)
        return res.squeeze(1).square(), res

    opt = QNewton(model.named_parameters(), rates=RATES)
    first = float(opt.step(closure))
    for _ in range(5):
        last = float(opt.step(closure))
    assert math.isfinite(last) and last < first
    assert opt.step_rule.trial.needs_grad


def test_trial_evaluations_leave_batchnorm_statistics_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    bn = model[1]

    def closure():
        return nn.functional.cross_entropy(model(x), y, reduction="none")

    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    value = TrialEvaluator()(closure)
    assert math.isfinite(value)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    # a step updates them once (its own forward pass), however many trials it makes
    opt = QNewton(model.named_parameters(), rates=RATES)
    opt.step(closure)
    assert int(bn.num_batches_tracked) == before[2] + 1
    with buffers_restored():
        model(x)
    assert int(bn.num_batches_tracked) == before[2] + 1


def test_a_direction_the_loss_cannot_see_moves_by_at_most_its_damped_length():
    # A bias before a BatchNorm: the loss is invariant to it, so its gradient is round-off and
    # its curvature zero. Damped relative to its own (zero) curvature it moved without bound
    # (running_mean −109 after one step); the scale-safe floor bounds its step by
    # ‖g_b‖ / (η·scale), η = ETA_MINI_BATCH, scale the largest block's mean diagonal entry.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    opt = QNewton(model.named_parameters(), grouping="tensor", rates=RATES)
    bias = model[0].bias
    start = bias.detach().clone()
    for i in range(3):
        xb, yb = x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]  # mini-batches
        opt.step(lambda xb=xb, yb=yb: nn.functional.cross_entropy(model(xb), yb,
                                                                  reduction="none"))
        g = float(bias.grad.norm())
        bound = g / (ETA_MINI_BATCH * opt.step_rule.scale)
        assert float((bias.detach() - start).norm()) <= bound * (i + 1) + 1e-6
        start = bias.detach().clone()
    assert float(model[1].running_mean.abs().max()) < 10


@pytest.mark.parametrize("grouping,expected", [("auto", "model"), ("tensor", "tensor")])
def test_auto_grouping_takes_the_whole_small_model_and_records_it(grouping, expected):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    opt = QNewton(model.named_parameters(), grouping=grouping, rates=RATES)
    opt.step(lambda: nn.functional.cross_entropy(model(x), y, reduction="none"))
    blocks = [b for _, b in opt.partition.current(opt.param_groups)]
    assert opt.partition.resolved == expected
    assert len(blocks) == (1 if expected == "model" else 4)
    settings = [e for e in opt.ledger.events if e["kind"] == "settings"]
    assert [(e["grouping"], e["curvature"]) for e in settings] == [(expected, "fisher")]


def test_full_batch_damping_grows_when_the_whole_model_shortens_the_step():
    """A rank-deficient block model (the Monte-Carlo GGN: 16 rows for 173 parameters) with λ → 0
    sends Δ into the factor's null space, where the exact curvature along Δ is large: the whole
    model's α* = −gᵀΔ/ΔᵀCΔ falls far below 1. Full batch, such a step counts as failed
    (Nielsen: λ·ν) — without it λ fell to 1e-12 and every step shrank to α ≈ 1e-9."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.Sigmoid(), nn.Linear(4, 2), nn.Linear(2, 4),
                          nn.Sigmoid(), nn.Linear(4, 8)).double()
    x = torch.rand(16, 8, dtype=torch.float64)

    def closure():
        out = model(x)
        losses = nn.functional.binary_cross_entropy_with_logits(out, x, reduction="none")
        return losses.sum(dim=1), out

    opt = QNewton(model.named_parameters(), rates=RATES, curvature="ggn-mc")
    for _ in range(12):
        opt.step(closure)
    infos = [i for i in opt.ledger.step_rule if i["regime"] == "full-batch" and i["accepted"]]
    short = [i for i in infos if i["quadratic_step_size"] < 0.5]
    assert short, "the case must exercise shortened steps"
    assert all(i["next_damping"] > i["damping"] for i in short)
    assert min(i["damping"] for i in infos) > 1e-6


def test_a_float32_full_batch_is_recognized_through_kernel_round_off():
    """A float32 model whose trial evaluation and next closure agree only to ~3e-7 (different
    kernels, as attention's fused and math paths) is still on the full batch: λ may vanish."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(64, 3)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    calls = [0]

    def closure():
        calls[0] += 1
        wobble = 1.0 + 3e-7 * (-1) ** calls[0]  # round-off that differs from call to call
        return ((model(x) - y) ** 2).squeeze(1) * wobble

    opt = QNewton(model.named_parameters(), rates=RATES)
    for _ in range(6):
        opt.step(closure)
    regimes = [info["regime"] for info in opt.ledger.step_rule]
    assert regimes[0] == "mini-batch" and set(regimes[1:]) == {"full-batch"}
    assert opt.step_rule.min_eig_fraction == 1e-8  # float32 keeps the default floor


def test_full_batch_solves_reach_directions_below_the_default_definiteness_floor():
    """Linear least squares whose Gram spans ten decades: Gauss–Newton is Newton's method, and
    the exact minimizer (``lstsq``) is reached once λ falls under the smallest curvature. The
    conditioning's default floor (1e-8 of max|A|) would leave the 1e-10 direction contracting by
    ~1% a step; full batch, the floor is 1e4 units of float64 round-off."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(64, 8, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    x = q @ torch.diag(torch.logspace(0, -5, 8, dtype=torch.float64)) @ v.T * 8.0
    truth = torch.randn(8, 1, generator=gen, dtype=torch.float64)
    y = x @ truth
    model = nn.Linear(8, 1, bias=False).to(torch.float64)

    def closure():
        out = model(x)
        return ((out - y) ** 2).squeeze(1), out

    opt = QNewton(model.named_parameters(), rates=RATES)
    for _ in range(40):
        opt.step(closure)
    best = torch.linalg.lstsq(x, y).solution
    err = torch.linalg.vector_norm(model.weight.detach().T - best) / torch.linalg.vector_norm(best)
    assert err < 1e-6, float(err)
    assert opt.step_rule.min_eig_fraction == 1e4 * torch.finfo(torch.float64).eps
