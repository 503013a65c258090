"""Per-sample gradients from one backward pass (qnewton.curvature.per_sample) and the GGN kinds
built on them, against ground truth: each sample's gradient by its own forward and
``torch.autograd.grad`` (float64), and the GGN as brute-force Σ_s J_sᵀ H_s J_s."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from qnewton.curvature import (
    CURVATURES,
    CurvatureConfig,
    FactorBlock,
    blocks_from_module,
    compute_curvature,
    flatten_block,
    unflatten_block,
)
from qnewton.curvature import fisher as fisher_kind
from qnewton.curvature import ggn as ggn_kind
from qnewton.curvature import ggn_mc as ggn_mc_kind
from qnewton.curvature.per_sample import NODE_HANDLERS, check_rows, per_sample_rows
from qnewton.curvature.per_sample.handlers import handlers_by_node_type

DT = torch.float64


# --------------------------------------------------------------------------------------------
# Models: each maps a batch to outputs (S, C), or (B, T, V) for per-token models
# --------------------------------------------------------------------------------------------


class ConvNet(nn.Module):
    """conv → tanh → flatten → linear, on (S, 2, 6, 6) images."""

    def __init__(self, **conv) -> None:
        super().__init__()
        conv = {"kernel_size": 3, "padding": 1, **conv}
        self.conv = nn.Conv2d(2, 4, **conv)
        with torch.no_grad():
            n = self.conv(torch.zeros(1, 2, 6, 6)).numel()
        self.head = nn.Linear(n, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.conv(x)).flatten(1))


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, kernel_size=3, stride=2, padding=2, dilation=2)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (S, 3, 9)
        return self.head(torch.tanh(self.conv(x)).mean(dim=2))


class CNN(nn.Module):
    """A small digits-style CNN: two convolutions, then a linear head, on (S, 1, 8, 8)."""

    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3) if batch_norm else None
        self.c2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(x)
        if self.bn is not None:
            h = self.bn(h)
        h = torch.tanh(self.c2(torch.tanh(h)))
        return self.head(h.flatten(1))


class BagOfEmbeddings(nn.Module):
    """Embedding of (S, T) token ids → mean over T → linear."""

    def __init__(self, padding_idx: int | None = None, **kw) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 3, padding_idx=padding_idx, **kw)
        self.head = nn.Linear(3, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.emb(ids)).mean(dim=1))


class Bag(nn.Module):
    """EmbeddingBag of (S, T) token ids (one bag per sample) → linear."""

    def __init__(self, **kw) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(7, 3, **kw)
        self.head = nn.Linear(3, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.bag(ids)))


class NormNet(nn.Module):
    """linear → LayerNorm → tanh → linear; 2-D inputs (S, 4) or sequences (S, T, 4) mean-pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 5)
        self.ln = nn.LayerNorm(5)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.ln(self.inp(x)))
        return self.head(h.mean(dim=1) if h.ndim == 3 else h)


class TokenNet(nn.Module):
    """Per-token logits (B, T, V) from embedding → LayerNorm over (T-independent) → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(6, 4, padding_idx=0)
        self.ln = nn.LayerNorm(4)
        self.out = nn.Linear(4, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.ln(self.emb(ids))))


def images(s: int = 6, channels: int = 2, size: int = 6) -> torch.Tensor:
    return torch.randn(s, channels, size, size, dtype=DT)


def tokens(s: int = 6, t: int = 5, vocab: int = 7) -> torch.Tensor:
    ids = torch.randint(0, vocab, (s, t))
    ids[0, :2] = 0  # padding positions (and a repeated index)
    ids[1, 1] = ids[1, 3]
    if s > 4:
        ids[3] = 0  # a sample of padding only (an empty bag)
    return ids


#: name → (model factory, input factory); all per-sample models with C = 3 outputs.
CASES = {
    "conv2d": (lambda: ConvNet(), images),
    "conv2d-stride-dilation": (lambda: ConvNet(stride=2, dilation=2, padding=2), images),
    "conv2d-groups-nobias": (lambda: ConvNet(groups=2, bias=False), images),
    "conv2d-rect-reflect": (lambda: ConvNet(kernel_size=(2, 3), stride=(2, 1), dilation=(1, 2),
                                            padding=(1, 2), padding_mode="reflect"), images),
    "conv1d": (Conv1dNet, lambda: torch.randn(6, 3, 9, dtype=DT)),
    "cnn": (CNN, lambda: images(channels=1, size=8)),
    "embedding": (BagOfEmbeddings, tokens),
    "embedding-padding": (lambda: BagOfEmbeddings(padding_idx=0), tokens),
    "embedding-bag-sum": (lambda: Bag(mode="sum"), tokens),
    "embedding-bag-mean-padding": (lambda: Bag(mode="mean", padding_idx=0), tokens),
    "embedding-bag-max-padding": (lambda: Bag(mode="max", padding_idx=0), tokens),
    "layer-norm": (NormNet, lambda: torch.randn(6, 4, dtype=DT)),
    "layer-norm-sequence": (NormNet, lambda: torch.randn(6, 5, 4, dtype=DT)),
    "batch-norm-eval": (lambda: CNN(batch_norm=True).eval(), lambda: images(channels=1, size=8)),
}


def make_case(name: str, seed: int = 0):
    torch.manual_seed(seed)
    factory, inputs = CASES[name]
    model = factory().to(DT)
    if isinstance(model, CNN) and model.bn is not None:
        with torch.no_grad():  # running statistics that are not the identity
            model.bn.running_mean.uniform_(-0.5, 0.5)
            model.bn.running_var.uniform_(0.5, 2.0)
    x = inputs()
    y = torch.randint(0, 3, (x.shape[0],))
    return model, x, y


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")


def one_at_a_time(model, block, x, y) -> torch.Tensor:
    """Row s: ``torch.autograd.grad`` of sample s's loss from a forward pass of sample s alone."""
    rows = []
    for i in range(x.shape[0]):
        loss = ce(model(x[i : i + 1]), y[i : i + 1]).sum()
        grads = torch.autograd.grad(loss, block.params, allow_unused=True)
        rows.append(flatten_block([torch.zeros_like(p) if g is None else g
                                   for g, p in zip(grads, block.params, strict=True)]))
    return torch.stack(rows)


def loss_terms(model, block, x, y) -> torch.Tensor:
    """Row s: the gradient of loss term s of the whole batch's forward pass (for coupled models,
    where a sample alone is not the same computation); ``x`` may be a tuple of inputs."""
    losses = ce(model(*x) if isinstance(x, tuple) else model(x), y)
    rows = []
    for i in range(losses.numel()):
        grads = torch.autograd.grad(losses[i], block.params, retain_graph=True)
        rows.append(flatten_block(grads))
    return torch.stack(rows)


def fisher(model, x, y, grouping: str = "tensor", fast_only: bool = False, monkeypatch=None):
    """Fisher blocks; with ``fast_only`` the generic path raises (so every block was fast).
    ``x`` may be a tuple of inputs."""
    blocks = blocks_from_module(model, grouping)
    losses = ce(model(*x) if isinstance(x, tuple) else model(x), y)
    if fast_only:
        def refuse(*args, **kwargs):
            raise AssertionError("the generic per-sample path was taken")

        monkeypatch.setattr(fisher_kind, "seeded_rows", refuse)
    res = compute_curvature(losses, blocks, CurvatureConfig(kind="fisher"))
    return blocks, res


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
        assert cb.factor.dtype == DT
        scale = float(ref[block.name].abs().max())
        assert float((cb.factor - ref[block.name]).abs().max()) <= 1e-5 * scale, block.name


def fast_blocks(model, x, y) -> set[str]:
    """Names of the blocks the one-pass machinery filled and its check accepted."""
    blocks = blocks_from_module(model)
    losses = ce(model(x), y)
    factors = {id(b): torch.empty(losses.numel(), b.numel, dtype=DT) for b in blocks}
    done = per_sample_rows(losses, [torch.ones_like(losses)], losses.numel(), blocks, factors,
                           CurvatureConfig())
    return {b.name for b in blocks if id(b) in done}


def test_batch_norm_in_training_mode_is_caught_by_the_check(monkeypatch):
    """Training-mode BatchNorm couples the samples: its own parameters have no handler, and the
    layer before it passes the structural test but fails the row check; both take the generic
    path, so the rows are still the gradients of the loss terms. Layers after it are exact."""
    torch.manual_seed(0)
    model = CNN(batch_norm=True).to(DT).train()
    x, y = images(8, channels=1, size=8), torch.randint(0, 3, (8,))
    assert fast_blocks(model, x, y) == {"c2.weight", "c2.bias", "head.weight", "head.bias"}
    generic: list[str] = []
    real = fisher_kind.seeded_rows

    def spy(root, seeds, s, rest, *args):
        generic.extend(b.name for b in rest)
        return real(root, seeds, s, rest, *args)

    monkeypatch.setattr(fisher_kind, "seeded_rows", spy)
    blocks, res = fisher(model, x, y)
    assert set(generic) == {"c1.weight", "c1.bias", "bn.weight", "bn.bias"}
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = loss_terms(model, block, x, y)
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)


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


def test_layout_the_graph_cannot_show_is_caught_by_the_check():
    torch.manual_seed(5)
    model = TimeMajor().to(DT)
    x, y = torch.randn(6, 4, 3, dtype=DT), torch.randint(0, 3, (6,))
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
# GGN (C backward passes) and Monte-Carlo GGN (one), against brute-force Σ_s J_sᵀ H_s J_s
# --------------------------------------------------------------------------------------------


def block_outputs(model, block, x, alone: bool):
    """``(J, out)``: J ``(S, C, N)`` = ∂outputs_s/∂θ_block for each sample s, by a forward pass of
    sample s alone (``alone``) or as rows of the whole batch's Jacobian; out ``(S, C)``."""
    names = {id(p): n for n, p in model.named_parameters()}
    v0 = flatten_block([p.detach() for p in block.params]).clone()

    def f(flat, inp):
        params = {n: p.detach() for n, p in model.named_parameters()}
        for p, piece in zip(block.params, unflatten_block(flat, block), strict=True):
            params[names[id(p)]] = piece
        out = functional_call(model, params, (inp,))
        return out.reshape(-1, out.shape[-1])

    if alone:
        jac = [torch.autograd.functional.jacobian(lambda v, i=i: f(v, x[i : i + 1])[0], v0)
               for i in range(x.shape[0])]
        return torch.stack(jac), f(v0, x).detach()
    return torch.autograd.functional.jacobian(lambda v: f(v, x), v0), f(v0, x).detach()


def loss_hessians(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """H_s = ∂²CE(o_s, y_s)/∂o_s², ``(S, C, C)``."""
    yf = y.reshape(-1)
    return torch.stack([
        torch.autograd.functional.hessian(lambda o, i=i: F.cross_entropy(o, yf[i]), out[i])
        for i in range(out.shape[0])
    ])


def brute_ggn(model, block, x, y, alone: bool = True) -> torch.Tensor:
    jac, out = block_outputs(model, block, x, alone)
    h = loss_hessians(out, y)
    return torch.einsum("sci,scd,sdj->ij", jac, h, jac) / jac.shape[0]


def curvature(kind, model, x, y, grouping="tensor", generic: str | None = None,
              monkeypatch=None, **cfg):
    """``(blocks, result)``; ``generic="refuse"`` makes the generic path raise."""
    blocks = blocks_from_module(model, grouping)
    out = model(x)
    if generic == "refuse":
        module = {"ggn": ggn_kind, "ggn-mc": ggn_mc_kind, "fisher": fisher_kind}[kind]

        def refuse(*args, **kwargs):
            raise AssertionError("the generic per-sample path was taken")

        monkeypatch.setattr(module, "seeded_rows", refuse)
    res = compute_curvature(ce(out, y), blocks, CurvatureConfig(kind=kind, **cfg), outputs=out)
    return blocks, res


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
    blocks, res = curvature("ggn", model, x, y)
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = brute_ggn(model, block, x, y, alone=False)
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12, msg=block.name)


def mc_reference(model, block, x, y, seed) -> torch.Tensor:
    """The Monte-Carlo factor rows J_sᵀ R_s z_s, with the same draw z as the kind."""
    jac, out = block_outputs(model, block, x, alone=True)
    evals, evecs = torch.linalg.eigh(loss_hessians(out, y))
    root = (evecs * evals.clamp(min=0).sqrt().unsqueeze(1)) @ evecs.transpose(1, 2)
    z = ggn_mc_kind.draw_directions(out, out.shape[0], out.shape[1], seed, DT)
    return torch.einsum("scn,scd,sd->sn", jac, root, z)


@pytest.mark.parametrize("generic", [None, "refuse"])
def test_ggn_mc_rows_are_sampled_ggn_rows(generic, monkeypatch):
    """The fast and the generic path both give the rows J_sᵀ R_s z_s of the kind's own draw."""
    model, x, y = make_case("cnn")
    if generic is None:  # the generic path for every block
        monkeypatch.setattr(ggn_mc_kind, "per_sample_rows", lambda *a, **k: set())
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
