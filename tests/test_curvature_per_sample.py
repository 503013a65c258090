"""Per-sample gradients from one backward pass (qnewton.curvature.per_sample) against ground
truth: each sample's gradient by its own forward pass and ``torch.autograd.grad`` (float64); the
fast path is taken where a handler exists, and the check sends coupled or wrong rows back to the
generic path."""

from __future__ import annotations

import pytest
import torch
from per_sample_fixtures import (
    CASES,
    CNN,
    DT,
    TokenNet,
    brute_ggn,
    ce,
    curvature,
    fast_blocks,
    fisher,
    images,
    loss_terms,
    make_case,
    one_at_a_time,
    tokens,
)
from torch import nn

from qnewton.curvature import (
    CurvatureConfig,
    FactorBlock,
    blocks_from_module,
    compute_curvature,
    flatten_block,
)
from qnewton.curvature.per_sample import (
    NODE_HANDLERS,
    check_rows,
    curvature_closure,
    engine,
    per_sample_rows,
)
from qnewton.curvature.per_sample.handlers import handlers_by_node_type

# --------------------------------------------------------------------------------------------
# Empirical Fisher: fast rows equal per-sample ground truth, and the fast path is taken
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grouping", ["tensor", "module"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_fisher_rows_equal_one_sample_at_a_time(name, grouping, monkeypatch):
    model, x, y = make_case(name)
    blocks, res = fisher(model, x, y, grouping, fast_only=True, monkeypatch=monkeypatch)
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = one_at_a_time(model, block, x, y)
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)


def test_per_token_losses_take_the_fast_path(monkeypatch):
    """S = B·T token losses: every handler sees T = 1 row per sample."""
    torch.manual_seed(3)
    model = TokenNet().to(DT)
    ids = tokens(3, 4, vocab=6)
    y = torch.randint(0, 5, (3, 4))
    blocks, res = fisher(model, ids, y, fast_only=True, monkeypatch=monkeypatch)
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = loss_terms(model, block, ids, y)
        assert cb.factor.shape == (12, block.numel)
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12)


def test_embedding_padding_row_gets_no_gradient():
    model, x, y = make_case("embedding-padding")
    blocks, res = fisher(model, x, y)
    (cb,) = [cb for b, cb in zip(blocks, res.blocks, strict=True) if b.name == "emb.weight"]
    table = cb.factor.reshape(x.shape[0], 7, 3)
    assert torch.count_nonzero(table[:, 0]) == 0
    assert torch.count_nonzero(table[:, 1:]) > 0


class OffsetBag(nn.Module):
    def __init__(self, **kw) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(7, 3, **kw)
        self.head = nn.Linear(3, 3)

    def forward(self, inputs: tuple) -> torch.Tensor:
        return self.head(torch.tanh(self.bag(*inputs)))


@pytest.mark.parametrize(("kw", "weighted"), [
    ({"mode": "sum"}, False), ({"mode": "sum"}, True), ({"mode": "mean"}, False),
    ({"mode": "max"}, False), ({"mode": "mean", "include_last_offset": True}, False)])
def test_embedding_bag_with_offsets_and_weights(kw, weighted, monkeypatch):
    """1-D indices with offsets (an empty bag among them) and per-sample weights (sum mode)."""
    torch.manual_seed(2)
    model = OffsetBag(**kw).to(DT)
    flat = torch.tensor([1, 2, 2, 5, 6, 3, 0, 4, 4])
    starts = [0, 3, 3, 6, 8]  # bag 1 is empty
    weights = torch.rand(9, dtype=DT) if weighted else None
    y = torch.randint(0, 3, (5,))

    def batch(i=None):
        if i is None:
            offsets = torch.tensor(starts + [9] if kw.get("include_last_offset") else starts)
            return flat, offsets, weights
        a, b = starts[i], (starts + [9])[i + 1]
        offsets = torch.tensor([0, b - a] if kw.get("include_last_offset") else [0])
        return flat[a:b], offsets, None if weights is None else weights[a:b]

    blocks, res = fisher(model, (batch(),), y, fast_only=True, monkeypatch=monkeypatch)
    for block, cb in zip(blocks, res.blocks, strict=True):
        rows = []
        for i in range(5):
            grads = torch.autograd.grad(ce(model(batch(i)), y[i : i + 1]).sum(), block.params)
            rows.append(flatten_block(grads))
        torch.testing.assert_close(cb.factor, torch.stack(rows), rtol=1e-10, atol=1e-12)


def test_float32_model_rows_match_float64_reference():
    model, x, y = make_case("cnn")
    ref = {b.name: one_at_a_time(model, b, x, y) for b in blocks_from_module(model)}
    model32 = model.float()
    blocks, res = fisher(model32, x.float(), y)
    for block, cb in zip(blocks, res.blocks, strict=True):
        assert cb.factor.dtype == torch.float32 and cb.dtype == DT  # stored float32, f64 math
        scale = float(ref[block.name].abs().max())
        err = float((cb.factor.double() - ref[block.name]).abs().max())
        assert err <= 1e-5 * scale, block.name



class HalfMLP(nn.Module):
    """A bfloat16/float16 MLP whose logits are upcast to float32 for the loss (the usual
    mixed-precision habit); ``center`` subtracts the batch mean of the hidden layer, which
    couples the samples."""

    def __init__(self, center: bool = False) -> None:
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)
        self.center = center

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.body(x))
        return self.head(h - h.mean(dim=0) if self.center else h).float()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_half_precision_rows_take_one_pass_and_coupling_is_still_caught(dtype, monkeypatch):
    """Half-precision models: the check's reference is computed in the model's precision, so
    its tolerance follows the parameters' dtype. The one-pass rows are kept (they used to go to
    the S-pass loop) and agree with float64 per-sample gradients at the same weights to a few
    eps of the dtype; a model coupling the samples is still sent to the loop."""
    torch.manual_seed(6)
    model = HalfMLP().to(dtype)
    x, y = torch.randn(8, 6).to(dtype), torch.randint(0, 3, (8,))
    blocks, res = fisher(model, x, y, fast_only=True, monkeypatch=monkeypatch)
    truth = HalfMLP().to(DT)
    truth.load_state_dict({k: v.to(DT) for k, v in model.state_dict().items()})
    eps = torch.finfo(dtype).eps
    for block, ref_block, cb in zip(blocks, blocks_from_module(truth), res.blocks, strict=True):
        ref = one_at_a_time(truth, ref_block, x.to(DT), y)
        err = (cb.factor.to(DT) - ref).norm(dim=1).max() / ref.norm(dim=1).max()
        assert err < 4 * eps, (block.name, float(err))
    coupled = HalfMLP(center=True).to(dtype)
    monkeypatch.undo()
    _, res = fisher(coupled, x, y)
    assert res.paths["body.weight"].startswith("loop"), res.paths


def test_batch_norm_in_training_mode_exact_rows_take_the_loop_for_earlier_layers(monkeypatch):
    """``batch_norm="exact"``: training-mode BatchNorm couples the samples; the layer before it
    passes the structural test but fails the row check and takes the generic path, so the rows
    are the gradients of the coupled loss terms. γ, β and the layers after it are one-pass."""
    torch.manual_seed(0)
    model = CNN(batch_norm=True).to(DT).train()
    x, y = images(8, channels=1, size=8), torch.randint(0, 3, (8,))
    generic: list[str] = []
    real = engine.seeded_rows

    def spy(root, seeds, s, rest, *args):
        generic.extend(b.name for b in rest)
        return real(root, seeds, s, rest, *args)

    monkeypatch.setattr(engine, "seeded_rows", spy)
    blocks = blocks_from_module(model)
    res = compute_curvature(ce(model(x), y), blocks,
                            CurvatureConfig(kind="fisher", batch_norm="exact"))
    assert set(generic) == {"c1.weight", "c1.bias"}
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = loss_terms(model, block, x, y)
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)


def held_statistics_forward(model: CNN, x: torch.Tensor) -> torch.Tensor:
    """The CNN with its training-mode BatchNorm's batch statistics as constants (detached)."""
    h = model.c1(x)
    mean = h.mean(dim=(0, 2, 3)).detach().reshape(1, -1, 1, 1)
    var = h.var(dim=(0, 2, 3), unbiased=False).detach().reshape(1, -1, 1, 1)
    bn = model.bn
    h = (h - mean) / torch.sqrt(var + bn.eps) * bn.weight.reshape(1, -1, 1, 1) + bn.bias.reshape(
        1, -1, 1, 1)
    h = torch.tanh(model.c2(torch.tanh(h)))
    return model.head(h.flatten(1))


def test_batch_norm_in_training_mode_held_statistics_one_pass(monkeypatch):
    """Default ``batch_norm="held"``: every block one-pass, rows equal to the per-sample
    gradients of the model whose batch statistics are constants (each sample alone in it)."""
    torch.manual_seed(0)
    model = CNN(batch_norm=True).to(DT).train()
    with torch.no_grad():
        model.bn.weight.uniform_(0.5, 2.0)
    x, y = images(8, channels=1, size=8), torch.randint(0, 3, (8,))
    blocks, res = fisher(model, x, y, fast_only=True, monkeypatch=monkeypatch)
    losses = ce(held_statistics_forward(model, x), y)
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = torch.stack([flatten_block(torch.autograd.grad(losses[i], block.params,
                                                             retain_graph=True))
                           for i in range(losses.numel())])
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)
    # the GGN takes the same rows: Σ_s J_sᵀ H_s J_s / S of the held-statistics model
    from per_sample_fixtures import loss_hessians

    out = held_statistics_forward(model, x)
    _, ggn = curvature("ggn", model, x, y, generic="refuse", monkeypatch=monkeypatch)
    h = loss_hessians(out.detach(), y)
    for block, cb in zip(blocks, ggn.blocks, strict=True):
        jac = torch.stack([torch.stack([flatten_block(torch.autograd.grad(
            out[i, c], block.params, retain_graph=True)) for c in range(3)])
            for i in range(out.shape[0])])
        ref = torch.einsum("sci,scd,sdj->ij", jac, h, jac) / out.shape[0]
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12, msg=block.name)
    # the mean-loss gradient stays exact (the coupled one), not the held-statistics one
    exact = torch.autograd.grad(ce(model(x), y).mean(), blocks[0].params)
    torch.testing.assert_close(res.grads[0], flatten_block(exact), rtol=1e-12, atol=1e-14)


def refuse_generic(*args, **kwargs):
    raise AssertionError("the generic per-sample path was taken")


class InstanceNormCNN(nn.Module):
    """conv → InstanceNorm2d (affine, training mode) → tanh → linear: the norm's statistics are
    each sample's own, so nothing couples the samples."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3)
        self.norm = nn.InstanceNorm2d(3, affine=True)
        self.head = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.norm(self.c1(x))).flatten(1))


@pytest.mark.parametrize("kind", ["fisher", "ggn"])
def test_instance_norm_rows_are_exact_not_held(kind, monkeypatch):
    """F.instance_norm is batch norm on (1, S·C, H, W): its statistics belong to one sample, so
    the rows of the conv before it are each sample's exact gradient (held statistics gave 34%
    errors, and rows to the conv bias, whose gradient is zero), all without the generic loop."""
    torch.manual_seed(5)
    model = InstanceNormCNN().to(DT).train()
    x, y = images(6, channels=1, size=6), torch.randint(0, 3, (6,))
    monkeypatch.setattr(engine, "seeded_rows", refuse_generic)
    blocks = blocks_from_module(model)
    with curvature_closure():  # recorded, so the norm's own γ, β take the functional path
        out = model(x)
    res = compute_curvature(ce(out, y), blocks, CurvatureConfig(kind=kind), outputs=out)
    assert not any("held" in p for p in res.paths.values()), res.paths
    for block, cb in zip(blocks, res.blocks, strict=True):
        if kind == "fisher":
            torch.testing.assert_close(cb.factor, one_at_a_time(model, block, x, y), rtol=1e-10,
                                       atol=1e-12, msg=block.name)
        else:
            torch.testing.assert_close(cb.to_dense(), brute_ggn(model, block, x, y), rtol=1e-10,
                                       atol=1e-12, msg=block.name)


def test_batch_norm_in_eval_mode_is_handled():
    model, x, y = make_case("batch-norm-eval")
    assert fast_blocks(model, x, y) == {b.name for b in blocks_from_module(model)}


class TimeMajor(nn.Module):
    """A linear layer fed time-major rows (T·S, D): not the sample-major layout handlers assume."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Linear(3, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (S, T, 3)
        s, t, d = x.shape
        h = self.tok(x.transpose(0, 1).reshape(t * s, d)).reshape(t, s, -1).transpose(0, 1)
        return self.head(torch.tanh(h).mean(dim=1))


def test_time_major_layout_is_found_by_the_probe(monkeypatch):
    """The layout probe (one backward pass seeded on sample 0) finds the time-major rows; without
    it, the check catches the wrong layout and sends the layer to the generic path."""
    torch.manual_seed(5)
    model = TimeMajor().to(DT)
    x, y = torch.randn(6, 4, 3, dtype=DT), torch.randint(0, 3, (6,))
    assert fast_blocks(model, x, y) == {b.name for b in blocks_from_module(model)}
    with monkeypatch.context() as m:
        m.setattr(engine, "probe_layouts", lambda *a, **k: {})
        assert fast_blocks(model, x, y) == {"head.weight", "head.bias"}
    blocks, res = fisher(model, x, y)
    for block, cb in zip(blocks, res.blocks, strict=True):
        torch.testing.assert_close(cb.factor, one_at_a_time(model, block, x, y), rtol=1e-10,
                                   atol=1e-12)


class Unhandled(nn.Module):
    """Layers without a handler (or refused): 3-D and transposed convolutions, an embedding with
    scale_grad_by_freq (it rescales by counts over the batch), a parameter used elementwise."""

    def __init__(self) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(1, 2, 2)
        self.deconv = nn.ConvTranspose2d(2, 2, 2)
        self.emb = nn.Embedding(5, 2, scale_grad_by_freq=True)
        self.gain = nn.Parameter(torch.ones(3))
        self.head = nn.Linear(2 * 2 * 2 + 2, 3)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        h = self.deconv(self.conv3d(x).squeeze(2)).flatten(1)
        e = self.emb(ids)
        return self.head(torch.cat([h, e.mean(1)], 1)) * self.gain


def test_unhandled_layers_take_the_generic_path_and_stay_correct():
    torch.manual_seed(6)
    model = Unhandled().to(DT)
    x = torch.randn(5, 1, 2, 2, 2, dtype=DT)
    ids = torch.randint(0, 5, (5, 4))
    y = torch.randint(0, 3, (5,))
    blocks = blocks_from_module(model)
    losses = ce(model(x, ids), y)
    factors = {id(b): torch.empty(5, b.numel, dtype=DT) for b in blocks}
    done = per_sample_rows(losses, [torch.ones_like(losses)], 5, blocks, factors,
                           CurvatureConfig())
    assert {b.name for b in blocks if id(b) in done} == {"head.weight", "head.bias"}
    res = compute_curvature(losses, blocks, CurvatureConfig(kind="fisher"))
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = loss_terms(model, block, (x, ids), y)
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)


# --------------------------------------------------------------------------------------------
# The handler registry and the check
# --------------------------------------------------------------------------------------------


def test_handler_registry():
    assert {"linear", "conv", "embedding", "embedding-bag", "layer-norm",
            "batch-norm"} <= set(NODE_HANDLERS)
    by_type = handlers_by_node_type()
    assert by_type["ConvolutionBackward0"] is NODE_HANDLERS["conv"]
    assert by_type["AddmmBackward0"] is by_type["MmBackward0"] is NODE_HANDLERS["linear"]
    assert sum(len(h.node_types) for h in NODE_HANDLERS.values()) == len(by_type)


def test_check_rows_are_first_and_last():
    assert check_rows(10, 1) == [(0, 0), (9, 0)]
    assert check_rows(10, 4) == [(0, 0), (9, 3)]


@pytest.mark.parametrize("kind", ["fisher", "ggn"])
def test_a_wrong_row_anywhere_is_caught_by_the_check(kind, monkeypatch):
    """A handler that is wrong on one row that is not checked by itself (here: a middle sample of
    the convolution) is caught by the random combination of all rows; the block is recomputed on
    the generic path and the result is right."""
    model, x, y = make_case("cnn")
    conv = NODE_HANDLERS["conv"]
    real = type(conv).per_sample

    def wrong(self, ctx, role, delta, r0, r1, num_samples, dtype):
        rows = real(self, ctx, role, delta, r0, r1, num_samples, dtype)
        if r0 <= 3 < r1:
            rows[3 - r0] *= 1.001
        return rows

    monkeypatch.setattr(type(conv), "per_sample", wrong)
    names = {b.name for b in blocks_from_module(model)}
    assert fast_blocks(model, x, y) == names - {"c1.weight", "c1.bias", "c2.weight", "c2.bias"}
    blocks, res = curvature(kind, model, x, y)
    for block, cb in zip(blocks, res.blocks, strict=True):
        if kind == "fisher":
            torch.testing.assert_close(cb.factor, one_at_a_time(model, block, x, y), rtol=1e-10,
                                       atol=1e-12)
        else:
            torch.testing.assert_close(cb.to_dense(), brute_ggn(model, block, x, y), rtol=1e-10,
                                       atol=1e-12)


def test_every_block_is_a_factor_block_for_each_kind():
    model, x, y = make_case("cnn")
    for kind in ("fisher", "ggn", "ggn-mc"):
        _, res = curvature(kind, model, x, y)
        assert all(isinstance(b, FactorBlock) and b.kind == kind for b in res.blocks)



class GatedBatchContext(nn.Module):
    """A batch-mean context behind a gate (ReZero style): the samples interact only while the
    gate is open, under the same graph either way."""

    def __init__(self) -> None:
        super().__init__()
        self.f, self.g, self.o = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 3)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = torch.tanh(self.g(x)).mean(0, keepdim=True)
        return self.o(torch.tanh(self.f(x) + self.alpha * context))


def test_coupling_that_depends_on_values_is_caught_every_time():
    """Closed gate: the one-pass rows are the per-sample gradients. Open gate, same graph: the
    samples are coupled, the check rejects the one-pass rows and the rows are the loss terms'
    gradients (the generic computation)."""
    torch.manual_seed(0)
    model = GatedBatchContext().to(DT)
    x, y = torch.randn(12, 4, dtype=DT), torch.randint(0, 3, (12,))
    for alpha in (0.0, 0.7):
        with torch.no_grad():
            model.alpha.fill_(alpha)
        blocks, res = fisher(model, x, y, grouping="module")
        for block, cb in zip(blocks, res.blocks, strict=True):
            torch.testing.assert_close(cb.factor, loss_terms(model, block, x, y), rtol=1e-10,
                                       atol=1e-12, msg=f"{block.name} at alpha={alpha}")


def test_a_passed_check_is_kept_for_the_same_graph_and_repeated(monkeypatch):
    """Identical graphs after a passed check take it without checking (only a leak probe of one
    backward pass), every RECHECK_EVERY-th one is checked again, and the rows stay exact; a
    graph of another model is checked at once."""
    from qnewton.curvature.per_sample import check_memory

    monkeypatch.setattr(check_memory, "_KEPT", type(check_memory._KEPT)())
    monkeypatch.setattr(check_memory, "RECHECK_EVERY", 3)
    checks = []
    real = engine._checked
    monkeypatch.setattr(engine, "_checked", lambda *a, **k: checks.append(1) or real(*a, **k))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    x, y = torch.randn(12, 4, dtype=DT), torch.randint(0, 3, (12,))
    counts = []
    for _ in range(4):
        checks.clear()
        blocks, res = fisher(model, x, y, grouping="module")
        for block, cb in zip(blocks, res.blocks, strict=True):
            torch.testing.assert_close(cb.factor, one_at_a_time(model, block, x, y), rtol=1e-10,
                                       atol=1e-12)
        counts.append(len(checks))
    assert counts == [1, 0, 0, 1]
    other = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    checks.clear()
    fisher(other, x, y, grouping="module")
    assert len(checks) == 1


def test_a_batch_of_one_sample_takes_one_pass_without_a_warning():
    import warnings

    from qnewton.curvature import CurvatureConfig, blocks_from_module, compute_curvature

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    x, y = torch.randn(1, 4, dtype=DT), torch.randint(0, 3, (1,))
    blocks = blocks_from_module(model, "tensor")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = compute_curvature(ce(model(x), y), blocks, CurvatureConfig(kind="fisher"))
    assert all(path.endswith("a batch of one sample") for path in res.paths.values())
    for block, cb in zip(blocks, res.blocks, strict=True):
        (g,) = torch.autograd.grad(ce(model(x), y).sum(), block.params)
        torch.testing.assert_close(cb.factor, g.reshape(1, -1), rtol=1e-12, atol=1e-14)
