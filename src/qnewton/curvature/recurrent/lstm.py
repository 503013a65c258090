"""``nn.LSTM`` unrolled into per-step linear maps (the same parameters, PyTorch's equations)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qnewton.curvature.recurrent.unroll import unroll


def lstm_cell(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], w_ih: torch.Tensor,
              w_hh: torch.Tensor, b_ih: torch.Tensor | None,
              b_hh: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step as documented for ``torch.nn.LSTM`` (gates i, f, g, o in that order):
    c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c'), with i, f, o sigmoids and g a tanh of
    W_i· x + b_i· + W_h· h + b_h·."""
    h, c = state
    i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class PerSampleLSTM(nn.LSTM):
    """An ``nn.LSTM`` whose forward is unrolled (:mod:`~qnewton.curvature.recurrent.unroll`) so
    that per-sample gradients of its weights take the one-pass linear rule. Same parameters, same
    ``state_dict``; ``proj_size`` > 0 is refused. Made from an existing module by
    :func:`~qnewton.curvature.recurrent.unfuse_recurrent`."""

    def forward(self, input: torch.Tensor, hx: Any = None) -> Any:  # noqa: A002
        return unroll(self, input, hx, lstm_cell, 2)
