"""Tests for qnewton.curvature: curvature blocks against brute-force ground truth (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from qnewton.curvature import (
    CURVATURES,
    CurvatureBlock,
    CurvatureBudgetError,
    CurvatureConfig,
    CurvatureResult,
    DenseBlock,
    FactorBlock,
    ParamBlock,
    blocks_from_module,
    blocks_from_params,
    compute_curvature,
    dense_block_bytes,
    estimate_block_bytes,
    evaluate_closure,
    flatten_block,
    format_bytes,
    unflatten_block,
)

DT = torch.float64


# --------------------------------------------------------------------------------------------
# Models and brute-force references
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, d_in: int = 3, hidden: int = 4, d_out: int = 2) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class SeqClassifier(nn.Module):
    """(B, T, D) → per-token Linear → tanh → mean-pool over T → Linear head."""

    def __init__(self, d: int = 3, hidden: int = 4, k: int = 3) -> None:
        super().__init__()
        self.tok = nn.Linear(d, hidden)
        self.head = nn.Linear(hidden, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.tok(x)).mean(dim=1))


class TokenModel(nn.Module):
    """(B, T, D) → per-token logits (B, T, V): a language-model-shaped model."""

    def __init__(self, d: int = 3, hidden: int = 4, vocab: int = 3) -> None:
        super().__init__()
        self.tok = nn.Linear(d, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.tok(x)))


def ce_losses(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")


def mse_losses(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).sum(dim=-1).reshape(-1)


def make_mlp_problem(seed: int = 0, s: int = 5, loss: str = "ce"):
    torch.manual_seed(seed)
    model = MLP().to(DT)
    x = torch.randn(s, 3, dtype=DT)
    if loss == "ce":
        y = torch.randint(0, 2, (s,))
        loss_fn = ce_losses
    else:
        y = torch.randn(s, 2, dtype=DT)
        loss_fn = mse_losses
    return model, x, y, loss_fn


def block_function(model: nn.Module, block: ParamBlock, x: torch.Tensor):
    """f(flat block vector) → model outputs, other parameters held fixed."""
    names = {id(p): n for n, p in model.named_parameters()}

    def f(flat: torch.Tensor) -> torch.Tensor:
        params = {n: p.detach() for n, p in model.named_parameters()}
        for p, piece in zip(block.params, unflatten_block(flat, block), strict=True):
            params[names[id(p)]] = piece
        return functional_call(model, params, (x,))

    return f


def block_vector(block: ParamBlock) -> torch.Tensor:
    return flatten_block([p.detach() for p in block.params]).clone()


def ref_hessian(model, block, x, y, loss_fn) -> torch.Tensor:
    f = block_function(model, block, x)
    return torch.autograd.functional.hessian(lambda v: loss_fn(f(v), y).mean(), block_vector(block))


def ref_per_sample_grads(model, block, x, y, loss_fn) -> torch.Tensor:
    """Each sample's gradient by its own forward + backward (S, N)."""
    rows = []
    s = loss_fn(model(x), y).numel()
    for i in range(s):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y)[i].backward()
        rows.append(flatten_block([p.grad for p in block.params]).clone())
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def ref_fisher(model, block, x, y, loss_fn) -> torch.Tensor:
    j = ref_per_sample_grads(model, block, x, y, loss_fn)
    return sum(torch.outer(g, g) for g in j) / j.shape[0]


def ref_ggn(model, block, x, y, per_sample_loss, psd: bool = False) -> torch.Tensor:
    """(1/S) Σ_s J_sᵀ H_s J_s with J_s by autograd.functional.jacobian, H_s by .hessian.

    ``per_sample_loss(o_s, s)`` is the loss of sample s as a function of its output row."""
    f = block_function(model, block, x)
    v0 = block_vector(block)
    out = f(v0).detach()
    c = out.shape[-1]
    flat_out = out.reshape(-1, c)
    s = flat_out.shape[0]
    g = torch.zeros(v0.numel(), v0.numel(), dtype=DT)
    for i in range(s):
        j_s = torch.autograd.functional.jacobian(lambda v, i=i: f(v).reshape(-1, c)[i], v0)
        h_s = torch.autograd.functional.hessian(lambda o, i=i: per_sample_loss(o, i), flat_out[i])
        if psd:
            evals, evecs = torch.linalg.eigh(h_s)
            h_s = evecs @ torch.diag(evals.clamp(min=0)) @ evecs.T
        g += j_s.T @ h_s @ j_s
    return g / s


def run(model, x, y, loss_fn, blocks, kind, **cfg):
    out = model(x)
    losses = loss_fn(out, y)
    config = CurvatureConfig(kind=kind, **cfg)
    return compute_curvature(losses, blocks, config,
                             outputs=out if CURVATURES[kind].needs_outputs else None)


# --------------------------------------------------------------------------------------------
# Blocks, flattening
# --------------------------------------------------------------------------------------------


def test_blocks_from_module_tensor_and_module_grouping():
    model = MLP()
    tb = blocks_from_module(model, "tensor")
    assert [b.name for b in tb] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [b.numel for b in tb] == [12, 4, 8, 2]
    assert all(len(b.params) == 1 for b in tb)
    mb = blocks_from_module(model, "module")
    assert [b.name for b in mb] == ["fc1", "fc2"]
    assert [b.numel for b in mb] == [16, 10]
    assert mb[0].params[0] is model.fc1.weight and mb[0].params[1] is model.fc1.bias
    with pytest.raises(ValueError, match="tensor.*module"):
        blocks_from_module(model, "layer")


def test_blocks_skip_frozen_and_dedupe_tied_weights():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight  # tied
    model[0].bias.requires_grad_(False)
    tb = blocks_from_module(model, "tensor")
    assert [b.name for b in tb] == ["0.weight", "1.bias"]
    mb = blocks_from_module(model, "module")
    assert [b.name for b in mb] == ["0", "1"]
    assert mb[0].params == (model[0].weight,)
    assert mb[1].params == (model[1].bias,)

    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(2))
            self.lin = nn.Linear(2, 2)

    assert [b.name for b in blocks_from_module(Root(), "module")] == ["<root>", "lin"]


def test_blocks_from_params():
    a = nn.Parameter(torch.zeros(2, 3))
    b = torch.zeros(4)  # frozen: skipped
    c = nn.Parameter(torch.zeros(5))
    blocks = blocks_from_params([a, b, c])
    assert [bl.name for bl in blocks] == ["param0", "param2"]
    assert [bl.numel for bl in blocks] == [6, 5]
    named = blocks_from_params([a, c], names=["a", "c"])
    assert [bl.name for bl in named] == ["a", "c"]
    with pytest.raises(ValueError, match="names"):
        blocks_from_params([a, c], names=["a"])
    with pytest.raises(ValueError, match="more than once"):
        blocks_from_params([a, a])


def test_param_block_identity_and_validation():
    p = nn.Parameter(torch.zeros(3))
    b1, b2 = ParamBlock("x", (p,)), ParamBlock("x", (p,))
    assert b1 != b2 and b1 == b1
    assert len({b1, b2}) == 2
    assert ParamBlock("y", [p]).params == (p,)  # list accepted, stored as tuple
    with pytest.raises(ValueError, match="no parameters"):
        ParamBlock("e", ())
    with pytest.raises(ValueError, match="does not require grad"):
        ParamBlock("f", (torch.zeros(2),))
    with pytest.raises(ValueError, match="numel"):
        ParamBlock("g", (p,), numel=5)
    with pytest.raises(ValueError, match="twice"):
        ParamBlock("h", (p, p))


@settings(max_examples=25, deadline=None)
@given(
    shapes=st.lists(
        st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4
    )
)
def test_flatten_unflatten_roundtrip(shapes):
    params = [nn.Parameter(torch.randn(s, dtype=DT)) for s in shapes]
    block = ParamBlock("b", tuple(params))
    flat = flatten_block([p.detach() for p in params])
    assert flat.shape == (block.numel,)
    pieces = unflatten_block(flat, block)
    for piece, p in zip(pieces, params, strict=True):
        assert piece.shape == p.shape
        assert torch.equal(piece, p.detach())
    with pytest.raises(ValueError, match="shape"):
        unflatten_block(torch.zeros(block.numel + 1, dtype=DT), block)


# --------------------------------------------------------------------------------------------
# Exact Hessian
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grouping", ["tensor", "module"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_hessian_blocks_match_autograd_functional(grouping, loss):
    model, x, y, loss_fn = make_mlp_problem(loss=loss)
    blocks = blocks_from_module(model, grouping)
    res = run(model, x, y, loss_fn, blocks, "hessian")
    assert isinstance(res, CurvatureResult)
    assert res.kind == "hessian" and res.num_samples == 5 and res.skipped == {}
    for block, cb in zip(blocks, res.blocks, strict=True):
        assert cb.kind == "hessian" and isinstance(cb, DenseBlock) and cb.name == block.name
        assert cb.matrix.shape == (block.numel, block.numel) and cb.dtype == DT
        ref = ref_hessian(model, block, x, y, loss_fn)
        torch.testing.assert_close(cb.matrix, ref, rtol=1e-10, atol=1e-12)
        assert torch.equal(cb.matrix, cb.matrix.T)
    assert torch.isclose(res.loss, loss_fn(model(x), y).mean())


def test_hessian_is_nonzero_and_indefinite_somewhere():
    # sanity: the test problem actually exercises non-trivial curvature
    model, x, y, loss_fn = make_mlp_problem()
    res = run(model, x, y, loss_fn, blocks_from_module(model, "module"), "hessian")
    evals = torch.linalg.eigvalsh(res.blocks[0].matrix)
    assert evals.abs().max() > 1e-3
    assert evals.min() < -1e-8  # the exact Hessian of an MLP block need not be PSD


def test_hessian_scalar_loss_accepted():
    model, x, y, loss_fn = make_mlp_problem()
    blocks = blocks_from_module(model)
    res = compute_curvature(loss_fn(model(x), y).mean(), blocks, CurvatureConfig(kind="hessian"))
    ref = ref_hessian(model, blocks[2], x, y, loss_fn)
    torch.testing.assert_close(res.blocks[2].matrix, ref, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Empirical Fisher
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grouping", ["tensor", "module"])
def test_fisher_matches_brute_force(grouping):
    model, x, y, loss_fn = make_mlp_problem(s=6)
    blocks = blocks_from_module(model, grouping)
    res = run(model, x, y, loss_fn, blocks, "fisher")
    for block, cb in zip(blocks, res.blocks, strict=True):
        assert cb.kind == "fisher" and isinstance(cb, FactorBlock)
        assert cb.factor.shape == (6, block.numel) and cb.scale == pytest.approx(1 / 6)
        j_ref = ref_per_sample_grads(model, block, x, y, loss_fn)
        torch.testing.assert_close(cb.factor, j_ref, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(
            cb.to_dense(), ref_fisher(model, block, x, y, loss_fn), rtol=1e-12, atol=1e-13
        )


@pytest.mark.parametrize("kind", ["fisher", "ggn"])
def test_float32_model_keeps_float32_factors_and_computes_in_float64(kind):
    """dtype=None (default): factors stored in the model's float32, every block operation in
    float64 (exact products of the stored values); float64 ground truth to float32 accuracy."""
    model, x, y, loss_fn = make_mlp_problem()
    ref = run(model, x, y, loss_fn, blocks_from_module(model), kind)
    model32 = model.to(torch.float32)
    res = run(model32, x.float(), y, loss_fn, blocks_from_module(model32), kind)
    for a, b, g in zip(res.blocks, ref.blocks, res.grads, strict=True):
        assert a.factor.dtype == torch.float32 and a.storage_dtype == torch.float32
        assert a.dtype == torch.float64 and g.dtype == torch.float32
        if kind == "fisher":  # GGN rows hold √ of near-zero loss-Hessian eigenvalues: compare FᵀF
            torch.testing.assert_close(a.factor.double(), b.factor, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.to_dense(), b.to_dense(), rtol=1e-4, atol=1e-6)
        # the float64 arithmetic on the stored float32 values is exact up to float64 rounding
        # (Kronecker rows store each row's factors: the exact float64 products of those)
        f = (a.structured.dense(torch.float64) if a.representation == "kronecker-rows"
             else a.factor.double())
        v = torch.randn(a.n, dtype=torch.float64)
        assert a.to_dense().dtype == torch.float64
        torch.testing.assert_close(a.to_dense(), a.scale * f.T @ f, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(a.matvec(v), a.scale * f.T @ (f @ v), rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(a.diagonal(), a.scale * (f * f).sum(0), rtol=1e-13,
                                   atol=1e-15)
        torch.testing.assert_close(a.gram(), f @ f.T, rtol=1e-13, atol=1e-15)
    forced = run(model32, x.float(), y, loss_fn, blocks_from_module(model32), kind,
                 dtype=torch.float64)
    assert forced.blocks[0].factor.dtype == torch.float64
    assert forced.grads[0].dtype == torch.float64


# --------------------------------------------------------------------------------------------
# Generalized Gauss-Newton
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("grouping", ["tensor", "module"])
def test_ggn_matches_brute_force(loss, grouping):
    model, x, y, loss_fn = make_mlp_problem(loss=loss, s=4)
    blocks = blocks_from_module(model, grouping)
    res = run(model, x, y, loss_fn, blocks, "ggn")
    assert res.num_outputs == 2

    def per_sample(o, i):
        if loss == "ce":
            return F.cross_entropy(o[None], y[i : i + 1])
        return ((o - y[i]) ** 2).sum()

    for block, cb in zip(blocks, res.blocks, strict=True):
        assert cb.kind == "ggn" and cb.factor.shape == (4 * 2, block.numel)
        assert cb.scale == pytest.approx(1 / 4)
        ref = ref_ggn(model, block, x, y, per_sample)
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12)


def test_ggn_equals_hessian_for_linear_model():
    # outputs linear in the parameters ⇒ the GGN is the exact Hessian
    torch.manual_seed(3)
    model = nn.Linear(3, 4).to(DT)
    x, y = torch.randn(7, 3, dtype=DT), torch.randint(0, 4, (7,))
    blocks = blocks_from_module(model, "module")
    ggn = run(model, x, y, ce_losses, blocks, "ggn").blocks[0].to_dense()
    hess = run(model, x, y, ce_losses, blocks, "hessian").blocks[0].matrix
    torch.testing.assert_close(ggn, hess, rtol=1e-10, atol=1e-12)


def test_ggn_clamps_negative_loss_curvature():
    # loss_s = o_s[0]·o_s[1]: H_s has eigenvalues ±1, the GGN uses its PSD part
    model, x, _, _ = make_mlp_problem()
    blocks = blocks_from_module(model)

    def loss_fn(out, y):
        return out[:, 0] * out[:, 1]

    res = run(model, x, None, loss_fn, blocks, "ggn")
    for block, cb in zip(blocks, res.blocks, strict=True):
        ref = ref_ggn(model, block, x, None, lambda o, i: o[0] * o[1], psd=True)
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12)
        assert torch.linalg.eigvalsh(cb.to_dense()).min() > -1e-12


def test_ggn_loss_linear_in_outputs_gives_zero():
    model, x, _, _ = make_mlp_problem()
    blocks = blocks_from_module(model)
    res = run(model, x, None, lambda out, y: out.sum(dim=1), blocks, "ggn")
    for cb in res.blocks:
        assert torch.count_nonzero(cb.factor) == 0


# --------------------------------------------------------------------------------------------
# Sequence (3-D) inputs: the flattening-order trap
# --------------------------------------------------------------------------------------------


def make_seq_problem(seed: int = 1):
    torch.manual_seed(seed)
    model = SeqClassifier().to(DT)
    x = torch.randn(4, 5, 3, dtype=DT)  # (B, T, D)
    y = torch.randint(0, 3, (4,))
    return model, x, y


@pytest.mark.parametrize("kind", ["fisher", "hessian"])
def test_sequence_model_matches_brute_force(kind):
    model, x, y = make_seq_problem()
    blocks = blocks_from_module(model, "tensor")
    res = run(model, x, y, ce_losses, blocks, kind)
    for block, cb in zip(blocks, res.blocks, strict=True):
        if kind == "fisher":
            ref = ref_fisher(model, block, x, y, ce_losses)
            j_ref = ref_per_sample_grads(model, block, x, y, ce_losses)
            torch.testing.assert_close(cb.factor, j_ref, rtol=1e-12, atol=1e-13)
        else:
            ref = ref_hessian(model, block, x, y, ce_losses)
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", tuple(CURVATURES))
def test_flattening_order_matches_param_grad(kind):
    """Gradient (and Fisher factor mean) flatten like p.grad.reshape(-1), not (in, out)."""
    model, x, y = make_seq_problem()
    blocks = blocks_from_module(model, "module")
    out = model(x)
    losses = ce_losses(out, y)
    res = compute_curvature(losses, blocks, CurvatureConfig(kind=kind), outputs=out)
    assert all(p.grad is None for p in model.parameters())  # .grad untouched
    losses.mean().backward()  # graph still usable afterwards
    for block, g, cb in zip(blocks, res.grads, res.blocks, strict=True):
        expected = torch.cat([p.grad.reshape(-1) for p in block.params])
        torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-14)
        for piece, p in zip(unflatten_block(g, block), block.params, strict=True):
            torch.testing.assert_close(piece, p.grad, rtol=1e-12, atol=1e-14)
        if kind == "fisher":
            torch.testing.assert_close(cb.factor.mean(0), expected, rtol=1e-10, atol=1e-13)
    # weight block is not square, so an (in, out) permutation would be caught
    assert model.tok.weight.shape[0] != model.tok.weight.shape[1]


@pytest.mark.parametrize("kind", ["fisher", "ggn", "hessian"])
def test_per_token_losses_language_model_shape(kind):
    torch.manual_seed(2)
    model = TokenModel().to(DT)
    x = torch.randn(2, 3, 3, dtype=DT)  # (B, T, D)
    y = torch.randint(0, 3, (2, 3))
    blocks = blocks_from_module(model, "tensor")
    res = run(model, x, y, ce_losses, blocks, kind)  # S = B·T = 6 token "samples"
    assert res.num_samples == 6
    for block, cb in zip(blocks, res.blocks, strict=True):
        if kind == "fisher":
            ref = ref_fisher(model, block, x, y, ce_losses)
        elif kind == "hessian":
            ref = ref_hessian(model, block, x, y, ce_losses)
        else:
            yf = y.reshape(-1)
            ref = ref_ggn(
                model, block, x, y, lambda o, i, yf=yf: F.cross_entropy(o[None], yf[i : i + 1])
            )
        torch.testing.assert_close(cb.to_dense(), ref, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", tuple(CURVATURES))
def test_chunk_size_does_not_change_results(kind):
    model, x, y, loss_fn = make_mlp_problem(s=7)
    blocks = blocks_from_module(model, "module")
    big = 10_000
    results = [run(model, x, y, loss_fn, blocks, kind, chunk_size=k) for k in (1, 3, big)]
    results.append(run(model, x, y, loss_fn, blocks, kind))  # default chunking
    base = results[0]
    for other in results[1:]:
        for a, b in zip(base.blocks, other.blocks, strict=True):
            torch.testing.assert_close(a.to_dense(), b.to_dense(), rtol=0, atol=1e-13)
        for ga, gb in zip(base.grads, other.grads, strict=True):
            assert torch.equal(ga, gb)


@settings(max_examples=10, deadline=None)
@given(
    s=st.integers(1, 6),
    hidden=st.integers(1, 4),
    chunk=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_fisher_factor_property(s, hidden, chunk, seed):
    torch.manual_seed(seed)
    model = MLP(hidden=hidden).to(DT)
    x, y = torch.randn(s, 3, dtype=DT), torch.randint(0, 2, (s,))
    blocks = blocks_from_module(model, "tensor")
    res = run(model, x, y, ce_losses, blocks, "fisher", chunk_size=chunk)
    for block, cb in zip(blocks, res.blocks, strict=True):
        j_ref = ref_per_sample_grads(model, block, x, y, ce_losses)
        torch.testing.assert_close(cb.factor, j_ref, rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------------
# Memory budget
# --------------------------------------------------------------------------------------------


def test_estimate_block_bytes():
    assert estimate_block_bytes("hessian", 10, 99) == dense_block_bytes(10) == 800
    assert estimate_block_bytes("fisher", 10, 4) == 4 * 10 * 8
    assert estimate_block_bytes("ggn", 10, 4, 3) == 4 * 3 * 10 * 8
    assert estimate_block_bytes("fisher", 10, 4, dtype=torch.float32) == 160
    n = 23520
    assert estimate_block_bytes("hessian", n, 1) == n * n * 8
    with pytest.raises(ValueError, match="curvature must be one of"):
        estimate_block_bytes("newton", 1, 1)
    with pytest.raises(ValueError, match="n must"):
        estimate_block_bytes("fisher", -1, 1)


def test_format_bytes():
    assert format_bytes(1000) == "1000 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(23520**2 * 8) == "4.1 GiB"
    assert format_bytes(2 * 1024**3) == "2.0 GiB"


def test_budget_error_names_block_size_and_budget():
    model, x, y, loss_fn = make_mlp_problem()
    blocks = blocks_from_module(model, "tensor")  # fc1.weight: 12×12 float64 = 1152 B
    with pytest.raises(CurvatureBudgetError) as info:
        run(model, x, y, loss_fn, blocks, "hessian", max_block_bytes=1000)
    msg = str(info.value)
    assert "'fc1.weight'" in msg and "12×12" in msg and "1.1 KiB" in msg
    assert "1000 B" in msg and "max_block_bytes" in msg and "fisher" in msg
    assert isinstance(info.value, MemoryError)


@pytest.mark.parametrize(
    ("kind", "budget", "over"),
    [
        ("hessian", 1000, {"fc1.weight"}),
        ("fisher", 400, {"fc1.weight"}),
        ("ggn", 600, {"fc1.weight", "fc2.weight"}),
    ],
)
def test_skip_over_budget(kind, budget, over):
    model, x, y, loss_fn = make_mlp_problem()
    blocks = blocks_from_module(model, "tensor")
    full = run(model, x, y, loss_fn, blocks, kind)
    out = model(x)
    res = compute_curvature(
        loss_fn(out, y),
        blocks,
        CurvatureConfig(kind=kind, max_block_bytes=budget),
        outputs=out,
        skip_over_budget=True,
    )
    assert set(res.skipped) == over
    for block, cb, ref, g, gref in zip(
        blocks, res.blocks, full.blocks, res.grads, full.grads, strict=True
    ):
        assert torch.equal(g, gref)  # gradients are returned for every block
        if block.name in over:
            assert cb is None
            assert block.name in res.skipped[block.name] and "budget" in res.skipped[block.name]
        else:
            torch.testing.assert_close(cb.to_dense(), ref.to_dense(), rtol=0, atol=1e-13)
    with pytest.raises(CurvatureBudgetError, match="fc1.weight"):
        run(model, x, y, loss_fn, blocks, kind, max_block_bytes=budget)


def test_all_blocks_skipped_still_returns_grads():
    model, x, y, loss_fn = make_mlp_problem()
    blocks = blocks_from_module(model, "tensor")
    for kind in CURVATURES:
        out = model(x)
        res = compute_curvature(
            loss_fn(out, y),
            blocks,
            CurvatureConfig(kind=kind, max_block_bytes=1),
            outputs=out,
            skip_over_budget=True,
        )
        assert res.blocks == [None] * 4 and len(res.skipped) == 4
        assert [g.numel() for g in res.grads] == [12, 4, 8, 2]


# --------------------------------------------------------------------------------------------
# Robustness and bad inputs
# --------------------------------------------------------------------------------------------


def test_unused_parameter_gets_zero_gradient_and_curvature():
    model, x, y, loss_fn = make_mlp_problem()
    extra = nn.Parameter(torch.ones(3, dtype=DT))
    blocks = [*blocks_from_module(model), ParamBlock("extra", (extra,))]
    for kind in CURVATURES:
        res = run(model, x, y, loss_fn, blocks, kind)
        assert torch.count_nonzero(res.grads[-1]) == 0
        assert torch.count_nonzero(res.blocks[-1].to_dense()) == 0


class _NoVmapSquare(torch.autograd.Function):
    """x² whose backward goes through Python lists, which vmap cannot batch."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.tensor(grad.tolist(), dtype=grad.dtype) * 2 * x


def test_falls_back_to_row_loop_when_vmap_fails():
    torch.manual_seed(4)
    lin = nn.Linear(3, 2).to(DT)
    x, y = torch.randn(5, 3, dtype=DT), torch.randint(0, 2, (5,))

    def model(inp):
        return _NoVmapSquare.apply(lin(inp))

    blocks = blocks_from_module(lin)
    with pytest.warns(RuntimeWarning, match="falling back"):
        res = run(model, x, y, ce_losses, blocks, "fisher", chunk_size=2)
    for block, cb in zip(blocks, res.blocks, strict=True):
        rows = []
        for i in range(5):
            (g,) = torch.autograd.grad(ce_losses(model(x), y)[i], block.params)
            rows.append(g.reshape(-1))
        torch.testing.assert_close(cb.factor, torch.stack(rows), rtol=1e-12, atol=1e-13)


def test_config_validation():
    # the kind is looked up in its registry where it is used (the settings hold its name only)
    with pytest.raises(ValueError, match="hessian.*ggn.*fisher"):
        compute_curvature(torch.ones(2, requires_grad=True) * 1.0,
                          [ParamBlock("w", (torch.ones(1, requires_grad=True),))],
                          CurvatureConfig(kind="nope"))
    with pytest.raises(ValueError, match="max_block_bytes"):
        CurvatureConfig(max_block_bytes=0)
    with pytest.raises(ValueError, match="max_block_bytes"):
        CurvatureConfig(max_block_bytes=1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        CurvatureConfig(chunk_size=0)
    with pytest.raises(ValueError, match="dtype"):
        CurvatureConfig(dtype=torch.int64)
    assert CurvatureConfig().kind == "fisher"
    assert CurvatureConfig().max_block_bytes == 2 * 1024**3


def test_bad_inputs_raise_clear_errors():
    model, x, y, loss_fn = make_mlp_problem()
    blocks = blocks_from_module(model)
    out = model(x)
    losses = loss_fn(out, y)
    for kind in ("fisher", "ggn"):
        with pytest.raises(ValueError, match=r"per-sample losses of shape \(S,\)"):
            compute_curvature(losses.reshape(5, 1), blocks, CurvatureConfig(kind=kind), out)
        with pytest.raises(ValueError, match=r"shape \(S,\)"):
            compute_curvature(losses.mean(), blocks, CurvatureConfig(kind=kind), out)
    with pytest.raises(ValueError, match="needs the model outputs"):
        compute_curvature(losses, blocks, CurvatureConfig(kind="ggn"))
    with pytest.raises(ValueError, match="reshape to"):
        compute_curvature(losses, blocks, CurvatureConfig(kind="ggn"), out[:3])
    with pytest.raises(ValueError, match="outputs do not require grad"):
        compute_curvature(losses, blocks, CurvatureConfig(kind="ggn"), out.detach())
    with pytest.raises(ValueError, match="do not require grad"):
        compute_curvature(losses.detach(), blocks)
    with pytest.raises(ValueError, match="no parameter blocks"):
        compute_curvature(losses, [])
    with pytest.raises(ValueError, match="more than one block"):
        compute_curvature(losses, [*blocks, ParamBlock("dup", (model.fc1.weight,))])
    with pytest.raises(TypeError, match="ParamBlock"):
        compute_curvature(losses, [model.fc1.weight])
    with pytest.raises(ValueError, match="do not depend on the outputs"):
        other = torch.randn(5, 2, dtype=DT, requires_grad=True)
        compute_curvature(losses, blocks, CurvatureConfig(kind="ggn"), other)


def test_evaluate_closure():
    model, x, y, loss_fn = make_mlp_problem()
    losses, outputs = evaluate_closure(lambda: loss_fn(model(x), y))
    assert losses.shape == (5,) and outputs is None
    with torch.no_grad():  # the closure still builds a graph
        losses, outputs = evaluate_closure(lambda: (loss_fn(o := model(x), y), o))
    assert losses.requires_grad and outputs.shape == (5, 2)
    with pytest.raises(TypeError, match="closure must return"):
        evaluate_closure(lambda: 1.0)
    with pytest.raises(TypeError, match="closure must return"):
        evaluate_closure(lambda: (losses, outputs, outputs))


def test_curvature_block_factor_consistency():
    # the returned factor-form blocks work with CurvatureBlock's matvec/diagonal
    model, x, y, loss_fn = make_mlp_problem()
    res = run(model, x, y, loss_fn, blocks_from_module(model, "module"), "ggn")
    for cb in res.blocks:
        assert isinstance(cb, CurvatureBlock)
        dense = cb.to_dense()
        v = torch.randn(cb.n, dtype=DT)
        torch.testing.assert_close(cb.matvec(v), dense @ v)
        torch.testing.assert_close(cb.diagonal(), dense.diagonal())
