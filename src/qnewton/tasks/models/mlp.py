"""The MLP of the ``digits`` and ``mnist`` tasks."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``in → h → h → out`` with tanh activations (logits out).

    tanh, not ReLU: it is smooth, so the exact Hessian has genuine second-order terms inside
    every layer (with ReLU they vanish almost everywhere).
    """

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))
