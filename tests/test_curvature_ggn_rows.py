"""The GGN from C backward passes and the Monte-Carlo GGN (``ggn-mc``) on the per-sample fast
path, against brute-force Σ_s J_sᵀ H_s J_s (float64); the Monte-Carlo estimate is unbiased."""

from __future__ import annotations

import pytest
import torch
from per_sample_fixtures import (
    CNN,
    DT,
    NormNet,
    TokenNet,
    block_outputs,
    brute_ggn,
    ce,
    curvature,
    images,
    loss_hessians,
    make_case,
    tokens,
)

from qnewton.curvature import CURVATURES, CurvatureConfig, blocks_from_module, compute_curvature
from qnewton.curvature import ggn_mc as ggn_mc_kind
from qnewton.curvature.per_sample import engine


@pytest.mark.parametrize("name", ["cnn", "conv1d", "conv2d-groups-nobias", "embedding-padding",
                                  "embedding-bag-mean-padding", "layer-norm-sequence",
                                  "batch-norm-eval"])
def test_ggn_equals_brute_force_on_the_fast_path(name, monkeypatch):
    model, x, y = make_case(name)
    blocks, res = curvature("ggn", model, x, y, "module", "refuse", monkeypatch)
    assert res.num_outputs == 3
    for block, cb in zip(blocks, res.blocks, strict=True):
        assert cb.factor.shape == (x.shape[0] * 3, block.numel)
        torch.testing.assert_close(cb.to_dense(), brute_ggn(model, block, x, y), rtol=1e-10,
                                   atol=1e-12, msg=block.name)


def test_ggn_per_token_outputs_on_the_fast_path(monkeypatch):
    torch.manual_seed(3)
    model = TokenNet().to(DT)
    ids, y = tokens(3, 4, vocab=6), torch.randint(0, 5, (3, 4))
    blocks, res = curvature("ggn", model, ids, y, generic="refuse", monkeypatch=monkeypatch)
    assert res.num_samples == 12
    for block, cb in zip(blocks, res.blocks, strict=True):
        torch.testing.assert_close(cb.to_dense(), brute_ggn(model, block, ids, y, alone=False),
                                   rtol=1e-10, atol=1e-12)


def test_ggn_with_batch_norm_in_training_mode_falls_back_and_stays_correct():
    torch.manual_seed(0)
    model = CNN(batch_norm=True).to(DT).train()
    x, y = images(5, channels=1, size=8), torch.randint(0, 3, (5,))
    blocks, res = curvature("ggn", model, x, y, batch_norm="exact")
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = brute_ggn(model, block, x, y, alone=False)
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12, msg=block.name)


def mc_reference(model, block, x, y, seed) -> torch.Tensor:
    """The Monte-Carlo factor rows J_sᵀ R_s z_s, with the same draw z as the kind."""
    jac, out = block_outputs(model, block, x, alone=True)
    evals, evecs = torch.linalg.eigh(loss_hessians(out, y))
    # eigenvalues at round-off level are 0 (their square roots are √ε noise), as in the kind
    tol = evals.shape[-1] * torch.finfo(DT).eps * evals.abs().amax(dim=-1, keepdim=True)
    root = evals.where(evals > tol, 0).sqrt()
    root = (evecs * root.unsqueeze(1)) @ evecs.transpose(1, 2)
    z = ggn_mc_kind.draw_directions(out, out.shape[0], out.shape[1], seed, DT)
    return torch.einsum("scn,scd,sd->sn", jac, root, z)


@pytest.mark.parametrize("generic", [None, "refuse"])
def test_ggn_mc_rows_are_sampled_ggn_rows(generic, monkeypatch):
    """The fast and the generic path both give the rows J_sᵀ R_s z_s of the kind's own draw."""
    model, x, y = make_case("cnn")
    if generic is None:  # the generic path for every block
        monkeypatch.setattr(engine, "per_sample_rows", lambda *a, **k: set())
    blocks, res = curvature("ggn-mc", model, x, y, generic=generic, monkeypatch=monkeypatch,
                            seed=7)
    assert res.num_outputs == 3
    for block, cb in zip(blocks, res.blocks, strict=True):
        assert cb.kind == "ggn-mc" and cb.factor.shape == (x.shape[0], block.numel)
        torch.testing.assert_close(cb.factor, mc_reference(model, block, x, y, seed=7),
                                   rtol=1e-10, atol=1e-12, msg=block.name)


@pytest.fixture
def one_thread():
    """Hundreds of tiny backward passes: threads only add overhead (and contention on a loaded
    machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ggn_mc_is_unbiased(one_thread):
    """The mean of many draws matches the exact GGN entry by entry, within 5 standard errors."""
    torch.manual_seed(1)
    model = NormNet().to(DT)
    x, y = torch.randn(3, 4, dtype=DT), torch.randint(0, 3, (3,))
    blocks = blocks_from_module(model, "module")
    exact = {b.name: brute_ggn(model, b, x, y) for b in blocks}
    out = model(x)
    losses = ce(out, y)
    draws = 200
    samples = {b.name: [] for b in blocks}
    for seed in range(draws):
        res = compute_curvature(losses, blocks, CurvatureConfig(kind="ggn-mc", seed=seed),
                                outputs=out)
        for b, cb in zip(blocks, res.blocks, strict=True):
            samples[b.name].append(cb.to_dense())
    for name, mats in samples.items():
        stack = torch.stack(mats)
        mean, se = stack.mean(0), stack.std(0) / draws**0.5
        assert bool(((mean - exact[name]).abs() <= 5 * se + 1e-12).all()), name
        # a real estimate: individual draws differ from the GGN by far more than the mean does
        assert float((stack[0] - exact[name]).abs().max()) > 3 * float(
            (mean - exact[name]).abs().max()), name


def test_ggn_mc_draws_are_reproducible():
    model, x, y = make_case("layer-norm")

    def factor(seed):
        _, res = curvature("ggn-mc", model, x, y, seed=seed)
        return res.blocks[0].factor

    assert torch.equal(factor(3), factor(3))
    assert not torch.equal(factor(3), factor(4))
    torch.manual_seed(11)
    a = factor(None)
    torch.manual_seed(11)
    assert torch.equal(a, factor(None))
    x2 = x.clone()
    x2[0, 0] += 1e-3  # another batch: another draw with the same seed
    _, res = curvature("ggn-mc", model, x2, y, seed=3)
    assert not torch.allclose(res.blocks[0].factor[1:], factor(3)[1:])


def test_ggn_mc_is_registered_and_needs_outputs():
    kind = CURVATURES["ggn-mc"]
    assert kind.needs_outputs and kind.psd
    assert kind.block_bytes(10, 4, 3) == 4 * 10 * 8  # S rows, not S·C
    with pytest.raises(ValueError, match="seed"):
        CurvatureConfig(kind="ggn-mc", seed=-1)




def test_readme_least_squares_closure_gets_the_gauss_newton_matrix():
    """README's recipe for a sum of squares, ``r = residual(); return r.square(), r``: 1-D
    residuals as the outputs give the Gauss–Newton matrix (2/S)·JᵀJ (brute-force Jacobian), and
    QNewton resolves ``curvature="auto"`` to the GGN. (The recipe once read ``r.unsqueeze(1)``,
    a new tensor the losses do not depend on, which the GGN's closure check refuses.)"""
    import qnewton

    torch.manual_seed(12)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(),
                                torch.nn.Linear(4, 1)).to(DT)
    x, target = torch.randn(7, 2, dtype=DT), torch.randn(7, dtype=DT)
    blocks = blocks_from_module(model, "model")
    r = model(x).squeeze(1) - target
    res = compute_curvature(r.square(), blocks, CurvatureConfig(kind="ggn"), outputs=r)
    jac = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        r[s], blocks[0].params, retain_graph=True)]) for s in range(7)])
    torch.testing.assert_close(res.blocks[0].to_dense(), 2 * jac.T @ jac / 7, rtol=1e-10,
                               atol=1e-12)
    opt = qnewton.QNewton(model.named_parameters())

    def closure():
        r = model(x).squeeze(1) - target
        return r.square(), r

    opt.step(closure)
    settings = [e for e in opt.ledger.events if e["kind"] == "settings"]
    assert [e["curvature"] for e in settings] == ["ggn"]


def test_a_view_of_the_outputs_is_refused_naming_the_tensor_to_return():
    """``return r.square(), r.unsqueeze(1)``: the losses do not depend on the new view, and the
    ClosureError says to return the very tensor the losses are computed from; nothing moves."""
    import qnewton
    from qnewton.curvature.kind import ClosureError

    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                                torch.nn.Linear(3, 1)).to(DT)
    x, target = torch.randn(6, 2, dtype=DT), torch.randn(6, dtype=DT)
    before = [p.detach().clone() for p in model.parameters()]
    opt = qnewton.QNewton(model.named_parameters())

    def closure():
        r = model(x).squeeze(1) - target
        return r.square(), r.unsqueeze(1)

    with pytest.raises(ClosureError, match="the very tensor the losses are computed from"):
        opt.step(closure)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
