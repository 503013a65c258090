"""Kronecker rows (:mod:`qnewton.curvature.structured`): every operation against the explicit
rows formed one by one, and the linear layers' Fisher and GGN blocks built from them against
brute-force curvature (float64)."""

from __future__ import annotations

import pytest
import torch
from brute_force import brute_force_curvature
from per_sample_fixtures import DT, ce
from torch import nn

from qnewton.curvature import (
    CurvatureConfig,
    ParamBlock,
    blocks_from_module,
    compute_curvature,
    structured,
)
from qnewton.curvature.structured import KroneckerRows, StructuredFactor, StructuredFactorBlock


def explicit(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Row s·P + j = kron(g[s, j], a[s]), one torch.kron per row."""
    s, p, _ = g.shape
    return torch.stack([torch.kron(g[i, j], a[i]) for i in range(s) for j in range(p)])


@pytest.fixture(scope="module")
def factor() -> tuple[StructuredFactor, torch.Tensor]:
    """A weight piece, a bias piece (input of ones) and two dense rows below; its rows."""
    gen = torch.Generator().manual_seed(0)
    s, p, o, i = 5, 3, 4, 6
    a, g = torch.randn(s, i, generator=gen, dtype=DT), torch.randn(s, p, o, generator=gen,
                                                                   dtype=DT)
    ones = torch.ones(s, 1, dtype=DT)
    extra = torch.randn(2, o * i + o, generator=gen, dtype=DT)
    sf = StructuredFactor([KroneckerRows(a, g), KroneckerRows(ones, g)], extra)
    rows = torch.cat([torch.cat([explicit(a, g), explicit(ones, g)], dim=1), extra])
    return sf, rows


def test_structured_factor_operations_equal_the_explicit_rows(factor):
    sf, f = factor
    assert sf.shape == tuple(f.shape) == (17, 28)
    torch.testing.assert_close(sf.dense(DT), f, rtol=0, atol=0)
    v, vs = torch.randn(28, dtype=DT), torch.randn(28, 3, dtype=DT)
    u, us = torch.randn(17, dtype=DT), torch.randn(17, 2, dtype=DT)
    close = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(sf.apply(v, DT), f @ v, **close)
    torch.testing.assert_close(sf.apply(vs, DT), f @ vs, **close)
    torch.testing.assert_close(sf.apply_t(u, DT), f.T @ u, **close)
    torch.testing.assert_close(sf.apply_t(us, DT), f.T @ us, **close)
    torch.testing.assert_close(sf.gram(DT), f @ f.T, **close)
    torch.testing.assert_close(sf.normal_matrix(DT), f.T @ f, **close)
    torch.testing.assert_close(sf.square_sums(DT), (f * f).sum(dim=0), **close)
    picked = torch.tensor([16, 0, 7, 15])
    torch.testing.assert_close(sf.take(picked, DT), f[picked], rtol=0, atol=0)
    # storage: S·(I + P·O) + S + dense rows, not M·N
    assert sf.stored_elements == 5 * 6 + 5 * 3 * 4 + 5 + 2 * 28 < f.numel()


@pytest.mark.parametrize("small", [True, False], ids=["explicit-products", "structured"])
def test_structured_block_is_the_factor_block_of_its_rows(factor, small, monkeypatch):
    """Both ways a block multiplies: by its kept float64 rows (a small factor) or by the
    structure (:data:`~qnewton.curvature.structured.EXPLICIT_MAX_ELEMENTS`)."""
    sf, f = factor
    monkeypatch.setattr(structured, "EXPLICIT_MAX_ELEMENTS", f.numel() if small else 0)
    block = StructuredFactorBlock("b", "ggn", sf, scale=0.25)
    assert block.explicit_products == small
    u = torch.randn(17, 2, dtype=DT)
    torch.testing.assert_close(block.apply_factor_t(u), f.T @ u, rtol=1e-12, atol=1e-12)
    assert block.n == 28 and block.factor_rows == 17 and block.psd
    torch.testing.assert_close(block.to_dense(), 0.25 * f.T @ f, rtol=1e-12, atol=1e-12)
    v = torch.randn(28, dtype=DT)
    torch.testing.assert_close(block.matvec(v), 0.25 * f.T @ (f @ v), rtol=1e-12, atol=1e-12)
    assert block.max_abs_entry() == pytest.approx(float((0.25 * f.T @ f).abs().max()))
    torch.testing.assert_close(block.gram(keep=True), f @ f.T, rtol=1e-12, atol=1e-12)
    assert block.has_gram
    torch.testing.assert_close(block.factor, f, rtol=0, atol=0)  # formed on request


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)


@pytest.mark.parametrize("kind", ["fisher", "ggn"])
@pytest.mark.parametrize("grouping", ["tensor", "model"])
def test_linear_layers_get_kronecker_rows_equal_to_brute_force(kind, grouping):
    model = mlp()
    x, y = torch.randn(7, 4, dtype=DT), torch.randint(0, 3, (7,))
    blocks = blocks_from_module(model, grouping)
    out = model(x)
    res = compute_curvature(ce(out, y), blocks, CurvatureConfig(kind=kind), outputs=out)
    for block, cb in zip(blocks, res.blocks, strict=True):
        assert cb.representation == "kronecker-rows", block.name
        assert cb.factor_rows == 7 * (3 if kind == "ggn" else 1)
        ref = brute_force_curvature(kind, model, x, y, block.params)
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12)


def test_kronecker_rows_of_a_curvature_subset_are_those_samples_rows():
    model = mlp()
    x, y = torch.randn(8, 4, dtype=DT), torch.randint(0, 3, (8,))
    blocks = blocks_from_module(model, "model")
    keep = torch.tensor([1, 4, 6])
    full = compute_curvature(ce(model(x), y), blocks, CurvatureConfig(kind="fisher"))
    part = compute_curvature(ce(model(x), y), blocks, CurvatureConfig(kind="fisher"),
                             samples=keep)
    (fb,), (pb,) = full.blocks, part.blocks
    assert pb.representation == "kronecker-rows" and pb.factor_rows == 3
    torch.testing.assert_close(pb.factor, fb.factor[keep], rtol=0, atol=0)


def test_ggn_with_an_l2_term_appends_its_rows_and_equals_the_hessian():
    """Softmax regression with ½λ‖W‖²: the GGN of the outputs plus the penalty's rows below the
    Kronecker rows is the exact Hessian (the model is linear in its parameters)."""
    torch.manual_seed(1)
    model = nn.Linear(4, 3).to(DT)
    x, y, lam = torch.randn(9, 4, dtype=DT), torch.randint(0, 3, (9,)), 0.3
    blocks = blocks_from_module(model, "model")
    out = model(x)
    losses = ce(out, y) + 0.5 * lam * model.weight.square().sum()
    res = compute_curvature(losses, blocks, CurvatureConfig(kind="ggn"), outputs=out)
    (cb,) = res.blocks
    assert cb.representation == "kronecker-rows" and cb.factor_rows > 9 * 3
    flat = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()])

    def objective(theta):
        w, b = theta[:12].view(3, 4), theta[12:]
        return nn.functional.cross_entropy(x @ w.T + b, y) + 0.5 * lam * w.square().sum()

    ref = torch.autograd.functional.hessian(objective, flat)
    torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["sequence", "untransposed"])
def test_rows_that_are_not_one_kronecker_product_per_sample_stay_explicit(case):
    """A linear layer applied to T positions per sample (a sum of T products) and ``x @ W``
    keep explicit rows, still exact."""
    torch.manual_seed(2)
    if case == "sequence":
        model = nn.Linear(4, 3).to(DT)
        x = torch.randn(5, 2, 4, dtype=DT)
        forward = lambda inp: model(inp).sum(dim=1)  # noqa: E731
        params = list(model.parameters())
    else:
        w = nn.Parameter(torch.randn(4, 3, dtype=DT))
        model = nn.ParameterList([w])
        x = torch.randn(5, 4, dtype=DT)
        forward = lambda inp: inp @ w  # noqa: E731
        params = [w]
    y = torch.randint(0, 3, (5,))
    blocks = [ParamBlock("all", params)]
    res = compute_curvature(ce(forward(x), y), blocks, CurvatureConfig(kind="fisher"))
    (cb,) = res.blocks
    assert cb.representation == "factor"
    rows = []
    for i in range(5):
        grads = torch.autograd.grad(ce(forward(x[i : i + 1]), y[i : i + 1]).sum(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    torch.testing.assert_close(cb.factor, torch.stack(rows), rtol=1e-10, atol=1e-12)


def test_modeled_flops_match_torch_flop_counter():
    """The flops the solvers' time models are given (FactorCosts) against torch's own count of
    the matrix products the operations run (elementwise work is not counted there: within 10%)."""
    from torch.utils.flop_counter import FlopCounterMode

    gen = torch.Generator().manual_seed(3)
    s, p, o, i = 32, 3, 8, 20
    a, g = torch.randn(s, i, generator=gen, dtype=DT), torch.randn(s, p, o, generator=gen,
                                                                   dtype=DT)
    sf = StructuredFactor([KroneckerRows(a, g), KroneckerRows(torch.ones(s, 1, dtype=DT), g)])
    costs = sf.costs()
    v = torch.randn(sf.shape[1], dtype=DT)
    for modeled, run in ((costs.product, lambda: sf.apply(v, DT)),
                         (costs.gram, lambda: sf.gram(DT)),
                         (costs.normal, lambda: sf.normal_matrix(DT))):
        with FlopCounterMode(display=False) as counter:
            run()
        assert modeled == pytest.approx(counter.get_total_flops(), rel=0.1)
    # an explicit factor of the same shape costs 2·M·N, 2·N·M², 2·M·N² (far more)
    m, n = sf.shape
    assert costs.product < 2 * m * n and costs.gram < 2 * n * m * m
