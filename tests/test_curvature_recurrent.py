"""GRU/LSTM per-sample rows through the unrolled twins (qnewton.curvature.recurrent) against
ground truth computed on the original fused modules: each sample's gradient from its own forward
pass (float64, 1e-10) and the GGN as brute-force Σ_s J_sᵀ H_s J_s; and sequence inputs to a plain
linear layer, summed over time."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from per_sample_fixtures import DT, brute_ggn, curvature, fisher, one_at_a_time
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from qnewton.curvature import blocks_from_module
from qnewton.curvature.recurrent import PerSampleGRU, PerSampleLSTM, unfuse_recurrent


class RecurrentNet(nn.Module):
    """(S, T, F) sequences → GRU/LSTM → tanh of the last step's output → linear (C = 3)."""

    def __init__(self, cell: type[nn.RNNBase], **kw) -> None:
        super().__init__()
        self.rnn = cell(3, 4, **kw)
        dirs = 2 if kw.get("bidirectional") else 1
        self.head = nn.Linear(4 * dirs, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_first = self.rnn.batch_first
        out, _ = self.rnn(x if batch_first else x.transpose(0, 1))
        last = out[:, -1] if batch_first else out[-1]
        return self.head(torch.tanh(last))


def pair(cell, seed=0, s=5, t=4, **kw):
    """(fused model, its twin (a deep copy, unfused), x (S, T, F), y)."""
    torch.manual_seed(seed)
    fused = RecurrentNet(cell, **kw).to(DT)
    twin = unfuse_recurrent(copy.deepcopy(fused))
    x = torch.randn(s, t, 3, dtype=DT)
    y = torch.randint(0, 3, (s,))
    return fused, twin, x, y


CONFIGS = [
    {"num_layers": layers, "batch_first": bf, "bias": bias}
    for layers in (1, 2) for bf in (True, False) for bias in (True, False)
] + [{"num_layers": 2, "bidirectional": True, "batch_first": True}]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM], ids=["gru", "lstm"])
def test_twin_fisher_rows_equal_fused_one_sample_at_a_time(cell, kw, monkeypatch):
    fused, twin, x, y = pair(cell, **kw)
    blocks, res = fisher(twin, x, y, fast_only=True, monkeypatch=monkeypatch)
    for block, ref_block, cb in zip(blocks, blocks_from_module(fused), res.blocks, strict=True):
        assert block.name == ref_block.name
        ref = one_at_a_time(fused, ref_block, x, y)
        torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12, msg=block.name)


@pytest.mark.parametrize("kw", [{"num_layers": 2, "batch_first": False},
                                {"bidirectional": True, "bias": False, "batch_first": True}])
@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM], ids=["gru", "lstm"])
def test_twin_ggn_equals_brute_force(cell, kw, monkeypatch):
    fused, twin, x, y = pair(cell, s=4, t=3, **kw)
    blocks, res = curvature("ggn", twin, x, y, generic="refuse", monkeypatch=monkeypatch)
    for block, ref_block, cb in zip(blocks, blocks_from_module(fused), res.blocks, strict=True):
        torch.testing.assert_close(cb.to_dense(), brute_ggn(fused, ref_block, x, y),
                                   rtol=1e-10, atol=1e-12, msg=block.name)


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM], ids=["gru", "lstm"])
def test_twin_outputs_and_states_equal_the_fused_module(cell):
    torch.manual_seed(1)
    fused = cell(3, 4, num_layers=2, bidirectional=True).to(DT)
    twin = unfuse_recurrent(copy.deepcopy(fused))
    x = torch.randn(6, 2, 3, dtype=DT)
    h0 = torch.randn(4, 2, 4, dtype=DT)
    hx = h0 if cell is nn.GRU else (h0, torch.randn(4, 2, 4, dtype=DT))
    for args in ((x,), (x, hx), (x[:, 0], hx[:, 0] if cell is nn.GRU else
                                 tuple(h[:, 0] for h in hx))):
        ref, got = fused(*args), twin(*args)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sort", [False, True], ids=["unsorted", "sorted"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM], ids=["gru", "lstm"])
def test_twin_on_packed_sequences_equals_the_fused_module(cell, batch_first, sort):
    """A PackedSequence (lengths 5, 2, 4, 1; 2 layers, bidirectional): the packed output, h_n
    (and c_n) equal the fused kernel's, with and without an initial state."""
    torch.manual_seed(2)
    fused = cell(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first).to(DT)
    twin = unfuse_recurrent(copy.deepcopy(fused))
    lengths = torch.tensor([5, 4, 2, 1]) if sort else torch.tensor([5, 2, 4, 1])
    x = torch.randn(4, 5, 3, dtype=DT) if batch_first else torch.randn(5, 4, 3, dtype=DT)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=sort)
    h0 = torch.randn(4, 4, 4, dtype=DT)
    hx = h0 if cell is nn.GRU else (h0, torch.randn(4, 4, 4, dtype=DT))
    for args in ((packed,), (packed, hx)):
        (ref_out, ref_h), (out, h) = fused(*args), twin(*args)
        assert type(out) is type(ref_out)
        torch.testing.assert_close(out.data, ref_out.data, rtol=1e-12, atol=1e-14)
        assert torch.equal(out.batch_sizes, ref_out.batch_sizes)
        for got, ref in ((out.sorted_indices, ref_out.sorted_indices),
                         (out.unsorted_indices, ref_out.unsorted_indices)):
            assert (got is None and ref is None) or torch.equal(got, ref)
        torch.testing.assert_close(h, ref_h, rtol=1e-12, atol=1e-14)


class PackedNet(nn.Module):
    """Padded (S, T, F) sequences with lengths → packed → GRU/LSTM → h_n's last layer → linear."""

    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.rnn = cell(3, 4, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(pack_padded_sequence(x, lengths, batch_first=True,
                                                 enforce_sorted=False))
        h = state if isinstance(state, torch.Tensor) else state[0]
        return self.head(torch.tanh(h[-1]))


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM], ids=["gru", "lstm"])
def test_twin_fisher_rows_on_packed_sequences_equal_each_sequence_alone(cell, monkeypatch):
    """Per-sample rows of a packed batch in one pass: row s equals the fused model's gradient of
    sample s run alone at its own length (its padding never reaches the gradient)."""
    torch.manual_seed(3)
    fused = PackedNet(cell).to(DT)
    twin = unfuse_recurrent(copy.deepcopy(fused))
    x = torch.randn(5, 4, 3, dtype=DT)
    lengths = torch.tensor([4, 1, 3, 2, 4])
    y = torch.randint(0, 3, (5,))
    blocks, res = fisher(twin, (x, lengths), y, fast_only=True, monkeypatch=monkeypatch)
    for block, ref_block, cb in zip(blocks, blocks_from_module(fused), res.blocks, strict=True):
        rows = []
        for s in range(5):
            n = int(lengths[s])
            loss = F.cross_entropy(fused(x[s:s + 1, :n], lengths[s:s + 1]), y[s:s + 1])
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(
                loss, ref_block.params)]))
        torch.testing.assert_close(cb.factor, torch.stack(rows), rtol=1e-10, atol=1e-12,
                                   msg=block.name)


def test_unfuse_keeps_the_parameter_objects_and_state_dict():
    model = nn.Sequential(nn.GRU(3, 4), nn.LSTM(4, 2))
    before = list(model.parameters())
    keys = list(model.state_dict())
    assert unfuse_recurrent(model) is model
    assert type(model[0]) is PerSampleGRU and type(model[1]) is PerSampleLSTM
    assert isinstance(model[0], nn.GRU) and isinstance(model[1], nn.LSTM)
    assert all(a is b for a, b in zip(model.parameters(), before, strict=True))
    assert list(model.state_dict()) == keys


def test_unsupported_recurrent_settings_are_named():
    with pytest.raises(ValueError, match="proj_size"):
        unfuse_recurrent(nn.LSTM(3, 4, proj_size=2))
    gru = unfuse_recurrent(nn.GRU(3, 4, num_layers=2, dropout=0.5))
    with pytest.raises(ValueError, match="dropout"):
        gru(torch.randn(5, 2, 3))
    gru.eval()
    assert gru(torch.randn(5, 2, 3))[0].shape == (5, 2, 4)
    with pytest.raises(TypeError, match="model"):
        unfuse_recurrent("gru")


class SummedSequenceLinear(nn.Module):
    """A linear layer on (S, T, F) inputs, tanh, summed over time, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inp(x)).sum(dim=1))


@pytest.mark.parametrize("kind", ["fisher", "ggn"])
def test_linear_on_sequence_inputs_sums_over_time(kind, monkeypatch):
    """Linear on 3-D (S, T, F) inputs: row s is Σ_t δ_{s,t} x_{s,t}ᵀ, in (out, in) order."""
    torch.manual_seed(4)
    model = SummedSequenceLinear().to(DT)
    x = torch.randn(6, 7, 4, dtype=DT)
    y = torch.randint(0, 3, (6,))
    blocks, res = curvature(kind, model, x, y, generic="refuse", monkeypatch=monkeypatch)
    for block, cb in zip(blocks, res.blocks, strict=True):
        if kind == "fisher":
            ref = one_at_a_time(model, block, x, y)
            torch.testing.assert_close(cb.factor, ref, rtol=1e-10, atol=1e-12)
        else:
            torch.testing.assert_close(cb.to_dense(), brute_ggn(model, block, x, y),
                                       rtol=1e-10, atol=1e-12)


def test_fused_recurrent_modules_still_get_correct_rows_on_the_generic_path():
    fused, _, x, y = pair(nn.GRU, s=4, t=3, batch_first=True)
    blocks, res = fisher(fused, x, y)
    for block, cb in zip(blocks, res.blocks, strict=True):
        torch.testing.assert_close(cb.factor, one_at_a_time(fused, block, x, y), rtol=1e-10,
                                   atol=1e-12)

