"""``nn.GRU`` unrolled into per-step linear maps (the same parameters, PyTorch's equations)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qnewton.curvature.recurrent.unroll import unroll


def gru_cell(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
             b_ih: torch.Tensor | None, b_hh: torch.Tensor | None) -> torch.Tensor:
    """One GRU step as documented for ``torch.nn.GRU`` (gates r, z, n in that order):
    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h."""
    i_r, i_z, i_n = F.linear(x, w_ih, b_ih).chunk(3, dim=1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class PerSampleGRU(nn.GRU):
    """An ``nn.GRU`` whose forward is unrolled (:mod:`~qnewton.curvature.recurrent.unroll`) so
    that per-sample gradients of its weights take the one-pass linear rule. Same parameters, same
    ``state_dict``; made from an existing module by
    :func:`~qnewton.curvature.recurrent.unfuse_recurrent`."""

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> Any:  # noqa: A002
        return unroll(self, input, hx, gru_cell, 1)
