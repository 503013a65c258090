"""The generic-path warning names the cause found in the autograd graph (a fused recurrent
kernel, a train-mode BatchNorm, attention, or the unhandled operations), and suggests the
recurrent fix only for a recurrent kernel."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from qnewton import QNewton, prepare
from qnewton.curvature.per_sample.causes import (
    ATTENTION_CAUSE,
    BATCHNORM_CAUSE,
    generic_path_causes,
)
from qnewton.solvers import MachineRates

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


def _causes(module, x, params):
    return generic_path_causes(module(x).sum() if not isinstance(module, nn.LSTM)
                               else module(x)[0].sum(), params)


def test_each_cause_is_named_from_the_graph():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 3, batch_first=True)
    causes = _causes(lstm, torch.randn(2, 5, 4), [lstm.weight_ih_l0])
    assert len(causes) == 1 and "qnewton.prepare" in causes[0] and "MkldnnRnn" in causes[0]

    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    assert _causes(bn, torch.randn(6, 4), [bn[0].weight]) == [BATCHNORM_CAUSE]
    bn.eval()  # eval mode: the samples are independent again, no BatchNorm cause
    assert BATCHNORM_CAUSE not in _causes(bn, torch.randn(6, 4), [bn[0].weight])

    attention = nn.MultiheadAttention(4, 2, batch_first=True)
    x = torch.randn(2, 3, 4)
    out = attention(x, x, x)[0].sum()
    assert generic_path_causes(out, [attention.in_proj_weight]) == [ATTENTION_CAUSE]


@pytest.mark.parametrize("batch_norm", ["held", "exact"])
def test_a_batchnorm_model_is_not_told_to_unfuse_recurrent_layers(batch_norm):
    # held (default): one-pass rows, no loop and no warning; exact: the coupled rows take the
    # loop, and the warning names the BatchNorm, not the recurrent fix
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    opt = QNewton(model.named_parameters(), rates=RATES, batch_norm=batch_norm)

    def closure():
        return nn.functional.cross_entropy(model(x), y, reduction="none")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step(closure)
    generic = [str(w.message) for w in caught if "generic loop" in str(w.message)]
    assert bool(generic) == (batch_norm == "exact")
    for message in generic:
        assert "BatchNorm" in message  # the cause, named (the functional stage's reason)
        assert "prepare" not in message and "unfuse" not in message


@pytest.mark.parametrize("root", [torch.ones(2)])
def test_a_root_without_a_graph_has_no_causes(root):
    assert generic_path_causes(root, []) == []


class PackedClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        return self.head(self.gru(packed)[1][-1])


def test_a_fused_recurrent_kernel_on_packed_input_is_told_to_prepare():
    """A fused nn.GRU fed a PackedSequence: the functional stage refuses it (its packed output
    has no sample dimension) and the warning also gives the fix, qnewton.prepare(model); once
    prepared, the twin takes packed input in one pass and nothing is warned."""
    torch.manual_seed(1)
    model = PackedClassifier()
    x, lengths = torch.randn(6, 5, 3), torch.tensor([5, 2, 4, 1, 3, 5])
    y = torch.randint(0, 3, (6,))

    def closure():
        return nn.functional.cross_entropy(model(x, lengths), y, reduction="none")

    def generic_warnings():
        opt = QNewton(model.named_parameters(), rates=RATES, grouping="tensor")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.step(closure)
        return [str(w.message) for w in caught if "generic loop" in str(w.message)]

    fused = [m for m in generic_warnings() if "gru." in m]
    assert fused and all("qnewton.prepare(model)" in m for m in fused), fused
    prepare(model)
    assert generic_warnings() == []
