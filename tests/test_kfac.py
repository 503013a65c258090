"""K-FAC: Kronecker blocks against brute force (factors, flattening order, damped solves, κ)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch
from torch import nn

from qnewton import QNewton
from qnewton.conditioning import ConditioningConfig, condition
from qnewton.conditioning.kronecker import pi_split
from qnewton.curvature import CurvatureConfig, blocks_from_module, compute_curvature
from qnewton.curvature.kronecker import KroneckerBlock
from qnewton.curvature.representation import FactorBlock
from qnewton.estimation.methods import KappaPolicy, analyse_kappa
from qnewton.solvers import SOLVERS, applicable_solvers, shape_of
from qnewton.solvers.rates import MachineRates

F64 = torch.float64


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, y, reduction="none")


class Cnn(nn.Module):
    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, kernel_size=3, padding=1, stride=2, bias=bias)
        self.fc = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def mlp(bias: bool = True) -> nn.Module:
    return nn.Sequential(nn.Linear(5, 4, bias=bias), nn.Tanh(), nn.Linear(4, 3)).to(F64)


def build(model: nn.Module, x: torch.Tensor, y: torch.Tensor, grouping: str = "module"):
    blocks = blocks_from_module(model, grouping)
    losses = ce(model(x), y)
    return blocks, compute_curvature(losses, blocks, CurvatureConfig(kind="kfac"))


def hooked(model: nn.Module, layer: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The layer's inputs and ∂ℓ_s/∂z from module hooks (independent of the graph reading)."""
    seen = {}
    h1 = layer.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].detach()))
    h2 = layer.register_full_backward_hook(
        lambda m, gi, go: seen.__setitem__("d", go[0].detach()))
    with warnings.catch_warnings():  # inputs that need no grad: the hook still fires
        warnings.filterwarnings("ignore", "Full backward hook")
        ce(model(x), y).sum().backward()
    h1.remove()
    h2.remove()
    model.zero_grad()
    return seen["x"], seen["d"]


def block_order_kron(g: torch.Tensor, a: torch.Tensor, d_in: int, bias: bool) -> torch.Tensor:
    """``G ⊗ A`` (torch.kron, row-major (out, d_a)) permuted by hand into [W.reshape(-1), b]."""
    d_out = g.shape[0]
    d_a = d_in + (1 if bias else 0)
    aug = torch.kron(g, a)
    order = [o * d_a + i for o in range(d_out) for i in range(d_in)]
    order += [o * d_a + d_in for o in range(d_out)] if bias else []
    idx = torch.tensor(order)
    return aug[idx][:, idx]


def test_single_sample_linear_block_is_its_exact_fisher():
    # One sample, one position: g gᵀ = (δ ⊗ ā)(δ ⊗ ā)ᵀ = δδᵀ ⊗ āāᵀ exactly — the flattening
    # order of W.reshape(-1) (+ bias) is G ⊗ A, not A ⊗ G.
    torch.manual_seed(0)
    model = mlp()
    x, y = torch.randn(1, 5, dtype=F64), torch.tensor([2])
    blocks, res = build(model, x, y)
    for block, curv in zip(blocks, res.blocks, strict=True):
        assert isinstance(curv, KroneckerBlock)
        g = torch.cat([p.reshape(-1) for p in torch.autograd.grad(
            ce(model(x), y).sum(), block.params)])
        torch.testing.assert_close(curv.to_dense(), torch.outer(g, g), rtol=1e-10, atol=1e-12)
        a_first = block_order_kron(curv.a, curv.g, curv.d_out, False)  # the wrong order
        assert not torch.allclose(a_first, torch.outer(g, g))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_factors_equal_brute_force_expectations(bias):
    torch.manual_seed(1)
    model = mlp(bias)
    x, y = torch.randn(7, 5, dtype=F64), torch.randint(0, 3, (7,))
    blocks, res = build(model, x, y)
    xin, delta = hooked(model, model[0], x, y)
    abar = torch.cat([xin, torch.ones(7, 1, dtype=F64)], 1) if bias else xin
    curv = res.blocks[0]
    torch.testing.assert_close(curv.a, abar.T @ abar / 7, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(curv.g, delta.T @ delta / 7, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(curv.to_dense(), block_order_kron(curv.g, curv.a, 5, bias),
                               rtol=1e-12, atol=1e-14)


def test_conv_factors_equal_brute_force_expectations():
    torch.manual_seed(2)
    model = Cnn().to(F64)
    x, y = torch.randn(4, 2, 6, 6, dtype=F64), torch.randint(0, 4, (4,))
    blocks, res = build(model, x, y)
    xin, delta = hooked(model, model.conv, x, y)
    cols = nn.functional.unfold(xin, 3, padding=1, stride=2)  # (S, 18, L)
    positions = cols.shape[2]
    a_ref = torch.zeros(19, 19, dtype=F64)
    g_ref = torch.zeros(3, 3, dtype=F64)
    for s in range(4):
        for p in range(positions):
            u = torch.cat([cols[s, :, p], torch.ones(1, dtype=F64)])
            d = delta[s].reshape(3, -1)[:, p]
            a_ref += torch.outer(u, u)
            g_ref += torch.outer(d, d)
    curv = res.blocks[0]
    assert isinstance(curv, KroneckerBlock) and curv.n == model.conv.weight.numel() + 3
    torch.testing.assert_close(curv.a, a_ref / 4, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(curv.g, g_ref / (4 * positions), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(curv.to_dense(), block_order_kron(curv.g, curv.a, 18, True),
                               rtol=1e-12, atol=1e-14)


def test_tensor_grouping_and_bias_first_orders():
    torch.manual_seed(3)
    model = mlp()
    x, y = torch.randn(6, 5, dtype=F64), torch.randint(0, 3, (6,))
    blocks, res = build(model, x, y, grouping="tensor")
    weight, bias = res.blocks[0], res.blocks[1]
    assert (weight.has_weight, weight.has_bias, bias.has_weight, bias.has_bias) == (
        True, False, False, True)
    _, joint = build(model, x, y)
    dense = joint.blocks[0].to_dense()
    # a weight-only block is the joint block's W×W part; a bias-only block its b×b part
    torch.testing.assert_close(weight.to_dense(), dense[:20, :20], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(bias.to_dense(), dense[20:, 20:], rtol=1e-12, atol=1e-14)
    flipped = KroneckerBlock("b-first", "kfac", joint.blocks[0].a, joint.blocks[0].g,
                             has_bias=True, weight_first=False)
    perm = torch.cat([torch.arange(20, 24), torch.arange(20)])
    torch.testing.assert_close(flipped.to_dense(), dense[perm][:, perm], rtol=1e-12,
                               atol=1e-14)


def test_unsupported_parameters_fall_back_to_the_fisher_factor():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.scale = nn.Parameter(torch.tensor([1.5]))

        def forward(self, x):
            return self.fc(x) * self.scale

    torch.manual_seed(4)
    model = Scaled().to(F64)
    blocks, res = build(model, torch.randn(5, 3, dtype=F64), torch.randint(0, 2, (5,)))
    kinds = {b.name: type(c) for b, c in zip(blocks, res.blocks, strict=True)}
    assert kinds == {"fc": KroneckerBlock, "<root>": FactorBlock}


@pytest.fixture(scope="module")
def damped_systems():
    torch.manual_seed(5)
    out = []
    model = mlp()
    _, res = build(model, torch.randn(9, 5, dtype=F64), torch.randint(0, 3, (9,)))
    out += list(res.blocks)
    cnn = Cnn().to(F64)
    _, res = build(cnn, torch.randn(3, 2, 6, 6, dtype=F64), torch.randint(0, 4, (3,)))
    out += list(res.blocks)
    cfg = ConditioningConfig(reg=1e-2)
    return [(b, condition(b, cfg)) for b in out]


def test_pi_split_system_is_the_damped_kronecker_product(damped_systems):
    for block, system in damped_systems:
        assert system.kronecker == (block.d_a, block.d_out) and system.dense is None
        lam = system.reg
        gamma_a, gamma_g = pi_split(block, lam)
        pi = math.sqrt((block.a.trace() / block.d_a) / (block.g.trace() / block.d_out))
        assert gamma_a == pytest.approx(pi * math.sqrt(lam), rel=1e-12)
        assert gamma_g == pytest.approx(math.sqrt(lam) / pi, rel=1e-12)
        eye_a, eye_g = torch.eye(block.d_a, dtype=F64), torch.eye(block.d_out, dtype=F64)
        d_in = block.d_a - 1
        ref = block_order_kron(block.g + gamma_g * eye_g, block.a + gamma_a * eye_a, d_in, True)
        ref.diagonal().add_(system.shift)
        torch.testing.assert_close(system.to_dense(), ref, rtol=1e-12, atol=1e-14)
        # not H + λI: the π-split adds π√λ·(G⊗I) + √λ/π·(I⊗A) besides
        plain = block.to_dense() + lam * torch.eye(block.n, dtype=F64)
        assert not torch.allclose(system.to_dense(), plain)
        assert float(torch.linalg.eigvalsh(ref)[0]) >= lam * (1 - 1e-12)


def test_kronecker_solve_equals_a_dense_solve(damped_systems):
    for _, system in damped_systems:
        b = torch.randn(system.n, dtype=F64)
        assert "kronecker" in applicable_solvers(system)
        result = SOLVERS["kronecker"].solve(system, b)
        ref = torch.linalg.solve(system.to_dense(), b)
        assert float((result.x - ref).norm() / ref.norm()) < 1e-10
        assert result.residual < 1e-10
        # with an extra shift (a repair) it stays exact
        system.shift += 0.3
        shifted = SOLVERS["kronecker"].solve(system, b).x
        ref = torch.linalg.solve(system.to_dense(), b)
        system.shift -= 0.3
        assert float((shifted - ref).norm() / ref.norm()) < 1e-10


def test_kronecker_kappa_is_exact_and_solver_only_for_kronecker_systems(damped_systems):
    block, system = damped_systems[0]
    kappa, norm = analyse_kappa(system, KappaPolicy())
    evals = torch.linalg.eigvalsh(system.to_dense())
    assert kappa.kind == "exact" and kappa.method == "kronecker-eig"
    assert kappa.value == pytest.approx(float(evals[-1] / evals[0]), rel=1e-10)
    assert norm == pytest.approx(float(evals[-1]), rel=1e-10)
    rates = MachineRates.user(dense_flops_per_s=1e10, gemm_flops_per_s=1e10)
    d_a, d_out = system.kronecker
    apply = 2 * (4 * d_out**2 * d_a + 4 * d_out * d_a**2) / 1e10 + rates.call_overhead_s
    shape = shape_of(system)  # the κ analysis computed (and kept) the eigendecompositions
    assert shape.kronecker_factored
    predict = SOLVERS["kronecker"].predict_seconds
    assert predict(shape, rates, 1e-10) == pytest.approx(apply, rel=1e-12)
    cold = dataclasses.replace(shape, kronecker_factored=False)
    assert predict(cold, rates, 1e-10) == pytest.approx(
        apply + 9 * (d_a**3 + d_out**3) / 1e10, rel=1e-12)
    factor = condition(FactorBlock("f", "fisher", torch.randn(3, 5, dtype=F64)),
                       ConditioningConfig())
    assert "kronecker" not in applicable_solvers(factor)


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_qnewton_kfac_lowers_the_loss(net):
    torch.manual_seed(6)
    if net == "mlp":
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        x = torch.randn(48, 6)
        y = torch.randint(0, 3, (48,))
    else:
        model = Cnn()
        x = torch.randn(16, 2, 6, 6)
        y = torch.randint(0, 4, (16,))
    opt = QNewton(model.named_parameters(), curvature="kfac", grouping="module",
                  policy="classical")

    def closure():
        opt.zero_grad()
        return ce(model(x), y)

    first = float(closure().detach().mean())
    for _ in range(8):
        opt.step(closure)
    last = float(closure().detach().mean())
    assert last < 0.8 * first
    records = [r for o in opt.last_outcomes for r in o.records]
    assert {r.representation for r in records} == {"kronecker"}
    for r in records:  # the Kronecker solver competes; the scheduler takes the fastest model
        assert "kronecker" in r.predicted_classical
        assert r.solver == min(r.predicted_classical, key=r.predicted_classical.get)


def _mlp_problem(seed: int = 7):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)
    x, y = torch.randn(24, 4, dtype=F64), torch.randint(0, 3, (24,))
    return model, x, y


def _kfac_opt(model, **kw):
    return QNewton(model.named_parameters(), curvature="kfac", grouping="module",
                   policy="classical", rates=MachineRates.user(1e10), **kw)


def test_running_averages_and_refresh_every_t_steps():
    model, x, y = _mlp_problem()
    opt = _kfac_opt(model, kfac_every=3, kfac_decay=0.5)

    def closure():
        opt.zero_grad()
        return ce(model(x), y)

    fresh = []  # each step's own factors of the first layer, built independently
    for _ in range(4):
        blocks = blocks_from_module(model, "module")
        res = compute_curvature(ce(model(x), y), blocks, CurvatureConfig(kind="kfac"))
        fresh.append(res.blocks[0].a.clone())
        opt.step(closure)
        if len(fresh) == 1:
            snap0 = opt.amortizer.stats["0"]["kfac_snap_a"].clone()
    avg = fresh[0]
    for k, a in enumerate(fresh[1:], start=2):
        eps = min(1 - 1 / k, 0.5)
        avg = eps * avg + (1 - eps) * a
    slot = opt.amortizer.stats["0"]
    torch.testing.assert_close(slot["kfac_a"], avg, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(snap0, fresh[0], rtol=0, atol=0)
    # step 3 (a multiple of 3) took the running average as its new snapshot
    torch.testing.assert_close(slot["kfac_snap_a"], avg, rtol=0, atol=0)
    # 2 layers: refreshed at steps 0 and 3, reused at 1 and 2
    assert (opt.amortizer.refreshed, opt.amortizer.reused) == (2 * 2, 2 * 2)
    # the snapshot keeps its eigendecompositions: the step's damped system shares them, and the
    # Kronecker solver's time model then leaves out the factorization
    snap = opt.amortizer._snapshots["0"]
    assert snap.has_eig
    damped = snap.damped(0.1, 0.2)
    assert damped.has_eig and damped.eig()[1] is snap.eig()[1]
    torch.testing.assert_close(damped.eig()[0], snap.eig()[0] + 0.1, rtol=0, atol=0)
    system = condition(snap, ConditioningConfig(reg=1e-2))
    rates = MachineRates.user(dense_flops_per_s=1e9, gemm_flops_per_s=1e9)
    assert shape_of(system).kronecker_factored
    cold = KroneckerBlock("cold", "kfac", snap.a, snap.g, has_bias=True)
    assert not shape_of(condition(cold, ConditioningConfig(reg=1e-2))).kronecker_factored
    assert SOLVERS["kronecker"].predict_seconds(shape_of(system), rates, 1e-10) < (
        SOLVERS["kronecker"].predict_seconds(shape_of(condition(cold, ConditioningConfig(
            reg=1e-2))), rates, 1e-10))


def test_amortized_run_resumes_bit_identically():
    def run(split: int | None, keep_kfac: bool = True):
        model, x, y = _mlp_problem(8)
        opt = _kfac_opt(model, kfac_every=3)

        def closure():
            opt.zero_grad()
            return ce(model(x), y)

        for step in range(7):
            if step == split:
                state = (model.state_dict(), opt.state_dict())
                model, x, y = _mlp_problem(8)
                model.load_state_dict(state[0])
                opt = _kfac_opt(model, kfac_every=3)
                if not keep_kfac:
                    state[1]["qnewton"]["kfac"] = None
                opt.load_state_dict(state[1])
            opt.step(closure)
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    straight = run(None)
    for split in (2, 4):  # between refreshes (2: the snapshot of step 0 is reused at step 2)
        assert torch.equal(run(split), straight)
    # the running averages and snapshots are what make it identical: without them it differs
    assert not torch.equal(run(2, keep_kfac=False), straight)


def test_auto_grouping_gives_kfac_its_layers():
    """``grouping="auto"`` would make this small model one block, which has no Kronecker
    factors (it would silently be the empirical Fisher); with K-FAC it resolves to module
    blocks, recorded, and every layer is solved in Kronecker form."""
    model = mlp()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    opt = QNewton(model.named_parameters(), curvature="kfac", rates=MachineRates.user(1e10))
    opt.step(lambda: ce(model(x), y))
    assert opt.partition.resolved == "module"
    settings = [e for e in opt.ledger.events if e["kind"] == "settings"]
    assert settings and settings[0]["grouping"] == "module"
    assert {r.representation for r in opt.ledger.records} == {"kronecker"}
