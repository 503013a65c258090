"""Small models with conv, embedding, embedding-bag, layer-norm and batch-norm layers, and the
ground truth the per-sample curvature tests compare with: each sample's gradient from its own
forward pass, and the GGN as brute-force Σ_s J_sᵀ H_s J_s (float64)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from qnewton.curvature import (
    CurvatureConfig,
    blocks_from_module,
    compute_curvature,
    flatten_block,
    unflatten_block,
)
from qnewton.curvature.per_sample import engine, per_sample_rows

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

        monkeypatch.setattr(engine, "seeded_rows", refuse)
    res = compute_curvature(losses, blocks, CurvatureConfig(kind="fisher"))
    return blocks, res


def fast_blocks(model, x, y) -> set[str]:
    """Names of the blocks the one-pass machinery filled and its check accepted."""
    blocks = blocks_from_module(model)
    losses = ce(model(x), y)
    factors = {id(b): torch.empty(losses.numel(), b.numel, dtype=DT) for b in blocks}
    done = per_sample_rows(losses, [torch.ones_like(losses)], losses.numel(), blocks, factors,
                           CurvatureConfig())
    return {b.name for b in blocks if id(b) in done}



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
        def refuse(*args, **kwargs):
            raise AssertionError("the generic per-sample path was taken")

        monkeypatch.setattr(engine, "seeded_rows", refuse)
    res = compute_curvature(ce(out, y), blocks, CurvatureConfig(kind=kind, **cfg), outputs=out)
    return blocks, res

