"""Per-sample rows for any model (docs/method.md §4.7, "Any model"): the functional path
(modules re-run per sample under vmap), the residual of sample-free terms (an L2 penalty),
attention (nn.MultiheadAttention, nn.TransformerEncoderLayer) and the generic loop as the last
resort with its reason — all against ground truth: each loss term's gradient by
``torch.autograd.grad`` (float64), and the generic loop's rows."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from per_sample_fixtures import DT, ce, loss_terms
from torch import nn

import qnewton
from qnewton.curvature import CurvatureConfig, blocks_from_module, compute_curvature
from qnewton.curvature.per_sample import curvature_closure, engine


class Gated(nn.Module):
    """A custom module that uses its parameters functionally (elementwise gain and shift, a
    weight through F.linear on a 3-D input)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3) / 2)
        self.gain = nn.Parameter(torch.rand(4) + 0.5)
        self.shift = nn.Parameter(torch.randn(4) / 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (S, T, 3) → (S, T, 4)
        return torch.tanh(F.linear(x, self.w)) * self.gain + self.shift


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gated = Gated()
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gated(x).mean(dim=1))


class Attention(nn.Module):
    """nn.MultiheadAttention (batch_first, self-attention) → mean over tokens → linear."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.inp = nn.Linear(3, 8)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (S, T, 3)
        h = self.inp(x)
        if not self.batch_first:
            h = h.transpose(0, 1)
        a, _ = self.mha(h, h, h, need_weights=False)
        if not self.batch_first:
            a = a.transpose(0, 1)
        return self.head(torch.tanh(a).mean(dim=1))


class Encoder(nn.Module):
    """A tiny transformer classifier: linear embedding, one nn.TransformerEncoderLayer, head."""

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.emb = nn.Linear(3, 8)
        self.enc = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=dropout,
                                              batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.emb(x)).mean(dim=1))


def fisher_rows(model, x, y, *, record=True, loop="refuse", penalty=0.0, monkeypatch=None):
    """Fisher blocks of ``model`` with the closure run inside ``curvature_closure`` (or not);
    ``loop="refuse"`` makes the generic loop raise."""
    if loop == "refuse":
        def refuse(*args, **kwargs):
            raise AssertionError("the generic loop was taken")

        monkeypatch.setattr(engine, "seeded_rows", refuse)
    blocks = blocks_from_module(model)
    with curvature_closure(record=record):
        losses = ce(model(x), y)
        if penalty:
            losses = losses + penalty * sum(p.square().sum() for p in model.parameters())
    return blocks, compute_curvature(losses, blocks, CurvatureConfig(kind="fisher"))


def terms(model, x, y, penalty=0.0):
    """Per-loss-term gradients of every block (brute force, one autograd.grad per term)."""
    blocks = blocks_from_module(model)
    with curvature_closure(record=False):
        losses = ce(model(x), y) + penalty * sum(p.square().sum() for p in model.parameters())
    out = []
    for b in blocks:
        out.append(torch.stack([
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[i], b.params,
                                                                   retain_graph=True)])
            for i in range(losses.numel())]))
    return out


CASES = {
    "custom-module": (Custom, lambda: torch.randn(6, 4, 3, dtype=DT)),
    "mha-batch-first": (Attention, lambda: torch.randn(6, 4, 3, dtype=DT)),
    "mha-sequence-first": (lambda: Attention(batch_first=False),
                           lambda: torch.randn(6, 4, 3, dtype=DT)),
    "encoder-eval": (lambda: Encoder().eval(), lambda: torch.randn(6, 4, 3, dtype=DT)),
    "encoder-train-no-dropout": (lambda: Encoder(dropout=0.0),
                                 lambda: torch.randn(6, 4, 3, dtype=DT)),
}


def make(name, seed=0):
    torch.manual_seed(seed)
    factory, inputs = CASES[name]
    model = factory().to(DT)
    x = inputs()
    return model, x, torch.randint(0, 3, (x.shape[0],))


@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_equal_brute_force_without_the_loop(name, monkeypatch):
    model, x, y = make(name)
    blocks, res = fisher_rows(model, x, y, monkeypatch=monkeypatch)
    for block, cb, ref in zip(blocks, res.blocks, terms(model, x, y), strict=True):
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)


@pytest.mark.parametrize("name", ["custom-module", "mha-batch-first"])
def test_functional_rows_equal_the_loop(name, monkeypatch):
    """The same rows as the generic loop (run without a recording, so the loop is taken)."""
    model, x, y = make(name)
    _, fast = fisher_rows(model, x, y, monkeypatch=monkeypatch)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, loop = fisher_rows(model, x, y, record=False, loop="allow")
    for a, b in zip(fast.blocks, loop.blocks, strict=True):
        torch.testing.assert_close(a.factor, b.factor, rtol=1e-10, atol=1e-12)


def test_l2_penalty_takes_the_residual_not_the_loop(monkeypatch):
    model, x, y = make("custom-module")
    blocks, res = fisher_rows(model, x, y, penalty=0.05, monkeypatch=monkeypatch)
    for block, cb, ref in zip(blocks, res.blocks, terms(model, x, y, penalty=0.05), strict=True):
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)


class Tied(nn.Module):
    """An embedding whose table is also the output projection (tied weights), used outside any
    module through F.linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.mix = nn.Linear(4, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.mix(self.emb(ids).mean(dim=1)))
        return F.linear(h, self.emb.weight)


def test_tied_weights(monkeypatch):
    torch.manual_seed(2)
    model = Tied().to(DT)
    ids, y = torch.randint(0, 5, (6, 3)), torch.randint(0, 5, (6,))
    blocks, res = fisher_rows(model, ids, y, monkeypatch=monkeypatch)
    for block, cb in zip(blocks, res.blocks, strict=True):
        torch.testing.assert_close(cb.factor, loss_terms(model, block, ids, y), rtol=1e-10,
                                   atol=1e-12, msg=block.name)


class Coupled(nn.Module):
    """A module that couples the samples (it subtracts the batch mean): re-running it per
    sample gives other gradients, so the check must send it to the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.w
        return h - h.mean(dim=0, keepdim=True)


def test_coupling_module_falls_back_to_the_loop_with_its_reason():
    torch.manual_seed(4)
    model = nn.Sequential(Coupled(), nn.Tanh(), nn.Linear(3, 3)).to(DT)
    x, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 3, (6,))
    with pytest.warns(RuntimeWarning, match="does not reproduce its gradients"):
        blocks, res = fisher_rows(model, x, y, loop="allow")
    for block, cb in zip(blocks, res.blocks, strict=True):
        torch.testing.assert_close(cb.factor, loss_terms(model, block, x, y), rtol=1e-10,
                                   atol=1e-12, msg=block.name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_gru_takes_the_functional_path(dtype, monkeypatch):
    torch.manual_seed(1)
    gru = nn.GRU(3, 4, batch_first=True).to(dtype)
    head = nn.Linear(4, 3).to(dtype)
    model = nn.ModuleDict({"gru": gru, "head": head})
    x, y = torch.randn(5, 2, 3, dtype=dtype), torch.randint(0, 3, (5,))
    forward = lambda inp: head(gru(inp)[0][:, -1])  # noqa: E731
    model.forward = forward
    blocks, res = fisher_rows(model, x, y, monkeypatch=monkeypatch)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == DT else {"rtol": 1e-4, "atol": 1e-6}
    for block, cb in zip(blocks, res.blocks, strict=True):
        torch.testing.assert_close(cb.factor, loss_terms(model, block, x, y), **tol,
                                   msg=block.name)


class Noisy(nn.Module):
    """A module drawing random numbers inside (dropout in training mode) and using its
    parameter elementwise (no one-pass handler)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.5, training=True) * self.w


def test_random_module_names_the_reason_in_the_warning():
    torch.manual_seed(1)
    model = nn.Sequential(Noisy(), nn.Tanh(), nn.Linear(3, 3)).to(DT)
    x, y = torch.randn(5, 3, dtype=DT), torch.randint(0, 3, (5,))
    with pytest.warns(RuntimeWarning, match="Noisy cannot be re-run per sample.*random"):
        fisher_rows(model, x, y, loop="allow")


def test_transformer_trains_at_the_defaults(monkeypatch):
    """float32, dropout 0.1: the CPU flash-attention kernel has no double backward; the step's
    closure runs on the math kernel, and no block takes the loop (it would raise here)."""
    torch.manual_seed(0)
    model = Encoder()
    x, y = torch.randn(16, 5, 3), torch.randint(0, 3, (16,))
    opt = qnewton.QNewton(model.named_parameters())

    def refuse(*args, **kwargs):
        raise AssertionError("the generic loop was taken")

    monkeypatch.setattr(engine, "seeded_rows", refuse)

    def closure():
        return F.cross_entropy(model(x), y, reduction="none")

    first = float(opt.step(closure))
    for _ in range(4):
        last = float(opt.step(closure))
    assert last < first


def test_prepare_swaps_fused_recurrent_layers_and_keeps_outputs():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 3)).to(DT)
    model.add_module("gru", nn.GRU(3, 4, batch_first=True).to(DT))
    gru = model.gru
    x = torch.randn(4, 5, 3, dtype=DT)
    before = gru(x)[0]
    assert qnewton.prepare(model) is model
    assert type(gru) is not nn.GRU and isinstance(gru, nn.GRU)  # the unrolled twin
    torch.testing.assert_close(gru(x)[0], before, rtol=1e-12, atol=1e-14)
    assert qnewton.prepare(model) is model  # idempotent
    with pytest.raises(TypeError, match="prepare\\(model\\)"):
        qnewton.prepare([gru])


def ggn_with_penalty(model, x, y, penalty, kind="ggn"):
    blocks = blocks_from_module(model)
    with curvature_closure():
        out = model(x)
        losses = ce(out, y)
        if penalty is not None:
            losses = losses + penalty * sum(p.square().sum() for p in model.parameters())
    return blocks, compute_curvature(losses, blocks, CurvatureConfig(kind=kind), outputs=out)


def test_ggn_with_an_l2_term_equals_brute_force():
    """GGN + the penalty's own curvature 2λI (the brute-force GGN from per-sample Jacobians and
    loss Hessians, plus the penalty's Hessian)."""
    from per_sample_fixtures import brute_ggn

    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    x, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 3, (6,))
    blocks, res = ggn_with_penalty(model, x, y, 0.05)
    assert res.bypass_covered and set(res.bypass) == {b.name for b in blocks}
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = brute_ggn(model, block, x, y) + 2 * 0.05 * torch.eye(block.numel, dtype=DT)
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12, msg=block.name)
    _, plain = ggn_with_penalty(model, x, y, None)
    assert plain.bypass == {} and not plain.bypass_covered


def _clamped_psd(h):
    """The reference H⁺: one eigendecomposition of the whole matrix, negatives set to zero."""
    evals, evecs = torch.linalg.eigh(h)
    return (evecs * evals.clamp(min=0)) @ evecs.T


@pytest.mark.parametrize("shape", ["diagonal", "permuted-blocks", "dense"])
def test_bypass_rows_reproduce_the_clamped_hessian(shape):
    """psd_rows splits H into the connected components of its nonzero pattern (an L2 penalty's
    Hessian is diagonal) and must give RᵀR/S = H⁺ exactly as one eigh of the whole H does, with
    one row per positive eigenvalue (negative and zero curvature dropped)."""
    from qnewton.curvature.bypass import psd_rows

    torch.manual_seed(11)
    n, s = 9, 5
    if shape == "diagonal":
        h = torch.diag(torch.tensor([2.0, 0.0, -1.0, 0.5, 3.0, 0.0, 1e-3, -2.0, 4.0], dtype=DT))
        positive = 5
    else:
        a = torch.randn(4, 4, dtype=DT)
        b = torch.randn(3, 3, dtype=DT)
        h = torch.block_diag(a @ a.T, b + b.T, torch.diag(torch.tensor([1.5, -0.5], dtype=DT)))
        if shape == "dense":
            q, _ = torch.linalg.qr(torch.randn(n, n, dtype=DT))
            h = q @ h @ q.T
        else:  # the blocks interleaved, as parameters of one tensor coupled by a penalty are
            perm = torch.randperm(n)
            h = h[perm][:, perm]
        positive = int((torch.linalg.eigvalsh(h) > 1e-12).sum())
    rows = psd_rows(h, s)
    assert rows.shape == (positive, n)
    torch.testing.assert_close(rows.T @ rows / s, _clamped_psd(h), rtol=1e-12, atol=1e-12)


def test_l2_bypass_rows_skip_the_whole_eigendecomposition(monkeypatch):
    """An L2 penalty under the GGN: its Hessian 2λI is diagonal, so its rows are √(S·2λ)·e_i
    and no block-sized eigh runs (one of N = 3,466 took 3 s a step); the values are checked
    against brute force in test_ggn_with_an_l2_term_equals_brute_force."""
    eigh, sizes = torch.linalg.eigh, []

    def recording_eigh(a, *args, **kw):
        sizes.append(a.shape[-1])
        return eigh(a, *args, **kw)

    monkeypatch.setattr(torch.linalg, "eigh", recording_eigh)
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    x, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 3, (6,))
    blocks, res = ggn_with_penalty(model, x, y, 0.05)
    assert sizes and max(sizes) == 3  # the 3×3 loss Hessians only
    for block in blocks:
        assert res.bypass[block.name] == f"bypass term's curvature added ({block.numel} rows)"


def test_a_loss_of_the_outputs_alone_needs_no_fixed_output_pass():
    """The structural walk says when the gradient with the outputs held fixed is zero without
    the backward pass: a loss of the outputs alone (through a view of them, too); not with an
    L2 term or an auxiliary loss on a hidden layer, whose fixed gradients are not zero."""
    from qnewton.curvature.bypass import fixed_output_gradients, reaches_parameters_around

    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    x, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 3, (6,))
    params = list(model.parameters())
    hidden = model[1](model[0](x))
    out = model[2](hidden)
    cases = {
        "outputs": nn.functional.cross_entropy(out, y, reduction="none"),
        "a view": out.reshape(6, 3).square().sum(dim=1),
        "an L2 term": nn.functional.cross_entropy(out, y, reduction="none")
        + 0.1 * model[0].weight.square().sum(),
        "a hidden layer": nn.functional.cross_entropy(out, y, reduction="none")
        + hidden.square().sum(dim=1),
    }
    for name, losses in cases.items():
        zero = all(g is None or not bool(g.any())
                   for g in fixed_output_gradients(losses, out, params, create_graph=False))
        assert zero == (name in ("outputs", "a view")), name
        assert reaches_parameters_around(losses, out, params) != zero, name


def test_qnewton_ggn_trains_with_an_l2_term():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(32, 3), torch.randint(0, 3, (32,))
    opt = qnewton.QNewton(model.named_parameters(), curvature="ggn")

    def closure():
        out = model(x)
        pen = 1e-3 * sum(p.square().sum() for p in model.parameters())
        return F.cross_entropy(out, y, reduction="none") + pen, out

    first = float(opt.step(closure))
    for _ in range(3):
        last = float(opt.step(closure))
    assert last < first


def test_many_output_ggn_becomes_the_monte_carlo_ggn_and_is_recorded():
    """C = 20 > ggn_max_outputs (16): the Monte-Carlo GGN's rows (same as kind "ggn-mc"), the
    substitution said in the result and in the optimizer's ledger; None keeps the exact GGN."""
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 20)).to(DT)
    x = torch.randn(5, 3, dtype=DT)
    target = torch.randn(5, 20, dtype=DT)
    blocks = blocks_from_module(model)
    out = model(x)
    losses = (out - target).square().sum(dim=1)
    auto = compute_curvature(losses, blocks, CurvatureConfig(kind="ggn"), outputs=out)
    mc = compute_curvature(losses, blocks, CurvatureConfig(kind="ggn-mc"), outputs=out)
    exact = compute_curvature(losses, blocks, CurvatureConfig(kind="ggn", ggn_max_outputs=None),
                              outputs=out)
    assert auto.kind == "ggn-mc" and "20 outputs per sample > ggn_max_outputs=16" in (
        auto.substituted or "")
    assert exact.kind == "ggn" and exact.substituted is None
    for a, m, e in zip(auto.blocks, mc.blocks, exact.blocks, strict=True):
        torch.testing.assert_close(a.factor, m.factor, rtol=0, atol=0)
        assert a.factor.shape[0] == 5 and e.factor.shape[0] == 5 * 20
    with pytest.raises(ValueError, match="ggn_max_outputs"):
        CurvatureConfig(kind="ggn", ggn_max_outputs=0)
    opt = qnewton.QNewton(model.named_parameters(), curvature="ggn")
    opt.step(lambda: ((lambda o: ((o - target).square().sum(dim=1), o))(model(x))))
    assert opt.ledger.summary()["curvature_substituted"] == {"ggn-mc": 1}
    assert opt.ledger.take_curvature()["curvature_kind"] == "ggn-mc"


def test_paths_say_which_path_each_block_took(monkeypatch):
    model, x, y = make("custom-module")
    _, res = fisher_rows(model, x, y, monkeypatch=monkeypatch)
    # F.linear on a 3-D input and the broadcast shift are one-pass; the elementwise gain is not
    assert res.paths == {"gated.w": "one-pass", "gated.gain": "functional",
                         "gated.shift": "one-pass", "head.weight": "one-pass",
                         "head.bias": "one-pass"}
    _, res = fisher_rows(model, x, y, penalty=0.01, monkeypatch=monkeypatch)
    assert res.paths["head.weight"] == "one-pass+residual"
    assert res.paths["gated.gain"] == "functional"
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, res = fisher_rows(model, x, y, record=False, loop="allow")
    assert res.paths["gated.gain"].startswith("loop: no module calls were recorded")


def test_positional_table_sliced_in_the_top_module_takes_the_functional_path(monkeypatch):
    """The lm task's model adds ``pos.weight[:n]`` in its own forward (no module call uses it):
    the whole model is re-run per sample, presented as a batch of one."""
    from qnewton.tasks.models.transformer import CharGPT

    torch.manual_seed(11)
    model = CharGPT(5, 6, 4, 1, 2, 8).to(DT)
    ids, y = torch.randint(0, 5, (4, 6)), torch.randint(0, 5, (4, 6))

    def per_sequence(out):
        return F.cross_entropy(out.reshape(-1, 5), y.reshape(-1), reduction="none").reshape(
            4, 6).mean(dim=1)

    monkeypatch.setattr(engine, "seeded_rows", lambda *a, **k: pytest.fail("loop taken"))
    blocks = blocks_from_module(model)
    with curvature_closure():
        losses = per_sequence(model(ids))
    res = compute_curvature(losses, blocks, CurvatureConfig(kind="fisher"))
    assert res.paths["pos.weight"] == "functional"
    losses = per_sequence(model(ids))
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            losses[i], block.params, retain_graph=True)]) for i in range(4)])
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)


@pytest.mark.parametrize("name", ["custom-module", "mha-batch-first"])
def test_functional_rows_equal_the_handlers_rows(name, monkeypatch):
    """Blocks the handlers cover, forced onto the functional path, give the handlers' rows."""
    model, x, y = make(name)
    _, fast = fisher_rows(model, x, y, monkeypatch=monkeypatch)
    monkeypatch.setattr(engine, "per_sample_rows", lambda *a, **k: set())
    _, functional = fisher_rows(model, x, y, monkeypatch=monkeypatch)
    assert set(functional.paths.values()) == {"functional"}
    assert "one-pass" in set(fast.paths.values())
    for a, b in zip(fast.blocks, functional.blocks, strict=True):
        torch.testing.assert_close(a.factor, b.factor, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_double_backward_curvature_on_flash_attention_models(kind, monkeypatch):
    """float32 and dropout 0 make PyTorch pick the CPU flash-attention kernel, which has no
    double backward; QNewton's closure runs on the math kernel, so the Hessian's products and the
    GGN's Jacobian products work."""
    torch.manual_seed(0)
    model = Encoder(dropout=0.0)
    x, y = torch.randn(8, 5, 3), torch.randint(0, 3, (8,))
    opt = qnewton.QNewton(model.named_parameters(), curvature=kind)

    def closure():
        out = model(x)
        losses = F.cross_entropy(out, y, reduction="none")
        return (losses, out) if kind == "ggn" else losses

    with pytest.raises(RuntimeError, match="flash_attention"):  # outside the context
        losses = closure()[0] if kind == "ggn" else closure()
        g = torch.autograd.grad(losses.mean(), list(model.parameters()), create_graph=True)
        torch.autograd.grad(sum(t.sum() for t in g), list(model.parameters()))
    first = float(opt.step(closure))
    assert math.isfinite(first)
    assert float(opt.step(closure)) < first


class TokenGRU(nn.Module):
    """Embedding → GRU (its unrolled twin) → linear over the vocabulary, at every position."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.rnn = qnewton.prepare(nn.GRU(3, 4, batch_first=True))
        self.out = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.emb(x))[0])


def test_per_token_losses_of_a_sequence_model_say_to_sum_per_sequence():
    """Per-token losses flattened to (B·T,) on a recurrent model: the tokens of a sequence are
    coupled, so the rows take the loop — exact, each token's loss gradient — with a warning that
    names the (B, T) layout and the per-sequence sum, which then takes one pass (rows = each
    sequence's gradient)."""
    torch.manual_seed(13)
    model = TokenGRU().to(DT)
    x, y = torch.randint(0, 5, (3, 4)), torch.randint(0, 5, (3, 4))
    blocks = blocks_from_module(model, "model")

    def losses(per_sequence):
        with curvature_closure():
            out = model(x)
        token = F.cross_entropy(out.reshape(-1, 5), y.reshape(-1), reduction="none")
        return token.reshape(3, 4).sum(1) if per_sequence else token

    def rows(terms):
        return torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            t, blocks[0].params, retain_graph=True)]) for t in terms])

    token = losses(False)
    with pytest.warns(RuntimeWarning, match=r"per-position losses of 3 sequences of 4 flattened"
                                            r"; one loss per sequence"):
        res = compute_curvature(token, blocks, CurvatureConfig(kind="fisher"))
    torch.testing.assert_close(res.blocks[0].factor, rows(token), rtol=1e-10, atol=1e-12)
    seq = losses(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = compute_curvature(seq, blocks, CurvatureConfig(kind="fisher"))
    assert res.paths == {"<model>": "one-pass"}
    torch.testing.assert_close(res.blocks[0].factor, rows(seq), rtol=1e-10, atol=1e-12)


class PackedTokens(nn.Module):
    """Variable-length sequences packed into one ``(tokens, 5)`` tensor: a linear layer on every
    token (its input rows are the tokens, not a multiple of the samples), summed per sequence,
    then a linear head."""

    def __init__(self, lengths: torch.Tensor) -> None:
        super().__init__()
        self.owner = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
        self.token = nn.Linear(5, 7)
        self.head = nn.Linear(7, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.token(tokens))
        pooled = h.new_zeros(self.owner.max() + 1, 7).index_add(0, self.owner, h)
        return self.head(pooled)


def test_packed_token_rows_are_mapped_to_their_sequences():
    """Each token row belongs to one sequence: the engine's mapping probe finds which, and the
    token layer's rows come from one backward pass, equal to each loss term's gradient."""
    torch.manual_seed(0)
    lengths = torch.tensor([3, 1, 5, 2, 4, 1, 2, 3])
    model = PackedTokens(lengths).to(DT)
    tokens, y = torch.randn(int(lengths.sum()), 5, dtype=DT), torch.randint(0, 3, (8,))
    blocks = blocks_from_module(model, "module")
    with curvature_closure():
        losses = ce(model(tokens), y)
    res = compute_curvature(losses, blocks, CurvatureConfig(kind="fisher"))
    assert res.paths["token"] == "one-pass"
    for block, cb in zip(blocks, res.blocks, strict=True):
        truth = loss_terms(model, block, tokens, y)
        torch.testing.assert_close(cb.to_dense(), truth.T @ truth / 8, rtol=1e-10, atol=1e-12)
