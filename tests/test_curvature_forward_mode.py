"""Forward-mode rows (:func:`qnewton.curvature.autograd.forward_mode_rows`): a closure that
differentiates the network with respect to its inputs (a physics-informed residual) has rows no
handler understands; with many more rows than parameters they come from N double-backward
products, equal to the per-sample Jacobian from ``torch.func`` and to the generic loop."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev, vmap

from qnewton.curvature import CurvatureConfig, ParamBlock, compute_curvature
from qnewton.curvature.autograd import FORWARD_MODE_RATIO, seeded_rows
from qnewton.curvature.per_sample import factor_rows

DT = torch.float64


class Scaled(nn.Module):
    """``s·x`` with a learnable scalar ``s``: a parameter use no per-sample handler knows."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s * x


@pytest.fixture(scope="module")
def pinn():
    """``(model, points, residual)``: u = s·MLP [2, 3, 1] (14 parameters; the learnable scale
    keeps the one-pass handlers out), residual Δu + u² at 48 points (48 ≥ 3·14 rows: the
    forward-mode path)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1), Scaled()).to(DT)
    points = torch.rand(48, 2, dtype=DT)

    def residual(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        u = m(x).squeeze(1)
        (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        lap = sum(torch.autograd.grad(du[:, d].sum(), x, create_graph=True)[0][:, d]
                  for d in range(2))
        return lap + u ** 2

    assert points.shape[0] >= FORWARD_MODE_RATIO * 14
    return model, points, residual


def per_point_jacobian(model, points):
    """∂r(x_s)/∂θ for each point, flat (S, N), by torch.func (no qnewton code)."""
    names = [n for n, _ in model.named_parameters()]

    def r(params, x):
        u = lambda y: functional_call(model, params, (y.unsqueeze(0),)).squeeze()  # noqa: E731
        return hessian(u)(x).diagonal().sum() + u(x) ** 2

    params = {n: p.detach() for n, p in model.named_parameters()}
    jac = vmap(jacrev(r), in_dims=(None, 0))(params, points)
    return torch.cat([jac[n].reshape(points.shape[0], -1) for n in names], dim=1)


def test_forward_mode_rows_equal_the_per_sample_jacobian(pinn):
    model, points, residual = pinn
    block = ParamBlock("<model>", list(model.parameters()))
    paths: dict[str, str] = {}
    z = residual(model, points).unsqueeze(1)
    losses = z.squeeze(1) ** 2
    res = compute_curvature(losses, [block], CurvatureConfig(kind="ggn"), outputs=z)
    (cb,) = res.blocks
    jac = per_point_jacobian(model, points)
    # squared residuals: the loss Hessian is 2, its root √2; the GGN is (2/S)·JᵀJ
    torch.testing.assert_close(cb.to_dense(), 2 * jac.T @ jac / 48, rtol=1e-10, atol=1e-12)


    rows = factor_rows(z, [torch.ones_like(z)], 48, [block], CurvatureConfig(), paths=paths)
    assert paths["<model>"].startswith("forward-mode")
    torch.testing.assert_close(rows[id(block)], jac, rtol=1e-10, atol=1e-12)
    loop = {id(block): torch.empty(48, 14, dtype=DT)}
    seeded_rows(z, [torch.ones_like(z)], 48, [block], loop, DT, None, 14 * 8)
    torch.testing.assert_close(rows[id(block)], loop[id(block)], rtol=1e-10, atol=1e-12)


def test_a_plain_mlp_pinn_takes_the_one_pass_rows(pinn):
    """Without the scale, every use of the weights — the forward pass and the products by W
    and Wᵀ that differentiating it with create_graph=True records — is a linear layer's: the
    rows come from one backward pass per seed, equal to the per-point Jacobian."""
    model = nn.Sequential(*list(pinn[0])[:3])
    points, residual = pinn[1], pinn[2]
    block = ParamBlock("<model>", list(model.parameters()))
    z = residual(model, points).unsqueeze(1)
    paths: dict[str, str] = {}
    rows = factor_rows(z, [torch.ones_like(z)], 48, [block], CurvatureConfig(), paths=paths)
    assert paths["<model>"] == "one-pass"
    torch.testing.assert_close(rows[id(block)], per_point_jacobian(model, points), rtol=1e-10,
                               atol=1e-12)


def two_part_jacobian(model, inner, edge):
    """Rows of the residuals Δu + u² at ``inner`` then u at ``edge``, flat (S, N), by torch.func
    (no qnewton code)."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    value = vmap(jacrev(lambda prm, x: functional_call(model, prm, (x.unsqueeze(0),)).squeeze()),
                 in_dims=(None, 0))(params, edge)
    return torch.cat([per_point_jacobian(model, inner),
                      torch.cat([value[n].reshape(edge.shape[0], -1) for n in names], dim=1)])


def test_a_pinn_that_calls_its_mlp_on_parts_of_the_batch_takes_the_one_pass_rows(pinn):
    """Interior residuals (Δu + u²) from one call of the MLP and boundary values (u) from
    another, joined: no linear input has the 48 samples as its rows, so the engine maps each
    row to its sample by two probing backward passes; the rows equal the per-point Jacobian
    of the two kinds of residual."""
    model = nn.Sequential(*list(pinn[0])[:3])
    points, residual = pinn[1], pinn[2]
    inner, edge = points[:40], points[40:]
    z = torch.cat([residual(model, inner), model(edge).squeeze(1)]).unsqueeze(1)
    block = ParamBlock("<model>", list(model.parameters()))
    paths: dict[str, str] = {}
    rows = factor_rows(z, [torch.ones_like(z)], 48, [block], CurvatureConfig(), paths=paths)
    assert paths["<model>"] == "one-pass"
    truth = two_part_jacobian(model, inner, edge)
    torch.testing.assert_close(rows[id(block)], truth, rtol=1e-10, atol=1e-12)


def test_a_kept_sample_map_serves_the_next_graph_and_a_wrong_one_is_dropped(pinn, monkeypatch):
    """The next step's graph takes the kept map without probing. A kept map that is wrong for
    the graph (corrupted here: two samples' rows swapped) still gives correct rows — the
    engine's check rejects them and a slower path computes them — and is forgotten: the rows are
    one-pass again with a map probed afresh."""
    from qnewton.curvature.per_sample import sample_map

    monkeypatch.setattr(sample_map, "_KNOWN", type(sample_map._KNOWN)())
    probes = []
    real = sample_map.capture
    monkeypatch.setattr(sample_map, "capture", lambda *a, **k: probes.append(1) or real(*a, **k))
    model = nn.Sequential(*list(pinn[0])[:3])
    points, residual = pinn[1], pinn[2]
    inner, edge = points[:40], points[40:]
    block = ParamBlock("<model>", list(model.parameters()))
    truth = two_part_jacobian(model, inner, edge)

    def step() -> str:
        probes.clear()
        z = torch.cat([residual(model, inner), model(edge).squeeze(1)]).unsqueeze(1)
        paths: dict[str, str] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = factor_rows(z, [torch.ones_like(z)], 48, [block], CurvatureConfig(),
                              paths=paths)
        torch.testing.assert_close(got[id(block)], truth, rtol=1e-10, atol=1e-12)
        return paths["<model>"]

    assert (step(), len(probes)) == ("one-pass", 2)
    assert (step(), len(probes)) == ("one-pass", 0)  # the kept map
    (maps,) = sample_map._KNOWN.values()
    for sample in maps:  # corrupt it: samples 0 and 1 swap rows
        zero, one = sample == 0, sample == 1
        sample[zero], sample[one] = 1, 0
    assert step() != "one-pass"  # rejected by the check, and the rows still right
    assert all(m is not maps for m in sample_map._KNOWN.values())  # forgotten
    assert step() == "one-pass"  # a correct map again (probed afresh)


def test_rows_that_mix_samples_are_not_mapped():
    """The mapping probe's rule: δ₂ = (σ + 1)·δ₁ row by row; a row that mixes samples 0 and 2
    (ratio 2 on one entry, 3 on the other) refuses the node; unreached rows get −1."""
    from qnewton.curvature.per_sample.sample_map import _row_samples

    a = torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.0, 0.0]], dtype=DT)
    sample = _row_samples(a, a * torch.tensor([[3.0], [1.0], [7.0]], dtype=DT), 4, 1e-9)
    assert sample.tolist() == [2, 0, -1]
    mixed = a.clone()
    mixed[0] = torch.tensor([2.0, 6.0], dtype=DT)
    assert _row_samples(a, mixed, 4, 1e-9) is None


def test_few_rows_keep_the_loop(pinn):
    """Fewer rows than FORWARD_MODE_RATIO × parameters: one backward pass per row, as before."""
    model, points, residual = pinn
    block = ParamBlock("<model>", list(model.parameters()))
    z = residual(model, points[:8]).unsqueeze(1)


    paths: dict[str, str] = {}
    with pytest.warns(RuntimeWarning, match="generic loop"):
        rows = factor_rows(z, [torch.ones_like(z)], 8, [block], CurvatureConfig(), paths=paths)
    assert paths["<model>"].startswith("loop")
    torch.testing.assert_close(rows[id(block)], per_point_jacobian(model, points[:8]),
                               rtol=1e-10, atol=1e-12)


class OnceDifferentiableSquare(torch.autograd.Function):
    """x² with a backward that has no derivative of its own."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


def test_a_graph_without_double_backward_falls_back_to_the_loop_and_says_so():
    """A weight used through an op no handler knows, whose backward has no derivative of its
    own: forward mode's products silently miss that path (zeros, no error), the check catches
    it, and the loop takes over (the reason in its warning and path); rows exact."""
    torch.manual_seed(0)
    w = torch.randn(3, 2, dtype=DT, requires_grad=True)
    v = torch.randn(1, 3, dtype=DT, requires_grad=True)
    x = torch.rand(48, 2, dtype=DT)

    def outputs(points):
        return torch.tanh(points @ OnceDifferentiableSquare.apply(w).T) @ v.T  # (S, 1)

    z = outputs(x)  # 48 rows ≥ 3 × 9 parameters
    block = ParamBlock("w,v", [w, v])
    paths: dict[str, str] = {}
    with pytest.warns(RuntimeWarning, match="forward mode failed"):
        rows = factor_rows(z, [torch.ones_like(z)], 48, [block], CurvatureConfig(), paths=paths)
    assert paths["w,v"].startswith("loop") and "forward mode failed" in paths["w,v"]
    expected = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        outputs(x[i:i + 1]).sum(), [w, v])]) for i in range(48)]
    torch.testing.assert_close(rows[id(block)], torch.stack(expected), rtol=1e-10, atol=1e-12)
