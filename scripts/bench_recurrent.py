"""Time compute_curvature on a GRU/LSTM digits classifier, fused module vs its unrolled twin.

    PYTHONPATH=src .venv/bin/python scripts/bench_recurrent.py fisher gru float64 [twin]

The 8×8 digits images are read as sequences of 8 rows of 8 pixels; the model is a recurrent
layer (hidden 32) and a linear head on its last output (10 classes); S = 512 samples, one thread.
Prints the load average and the time of two calls (the first pays one-off costs).
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from qnewton.curvature import CurvatureConfig, blocks_from_module, compute_curvature
from qnewton.curvature.recurrent import unfuse_recurrent


class Classifier(nn.Module):
    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.rnn = cell(8, 32, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def main(kind: str = "fisher", cell: str = "gru", dtype: str = "float64", *flags: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    digits = load_digits()
    x = torch.tensor(digits.data[:512], dtype=dt).reshape(512, 8, 8) / 16
    y = torch.tensor(digits.target[:512])
    model = Classifier({"gru": nn.GRU, "lstm": nn.LSTM}[cell]).to(dt)
    if "twin" in flags:
        unfuse_recurrent(model)
    blocks = blocks_from_module(model)
    print(f"{kind} {cell} {dtype} {'twin' if 'twin' in flags else 'fused'}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for call in range(2):
        start = time.perf_counter()
        out = model(x)
        losses = F.cross_entropy(out, y, reduction="none")
        compute_curvature(losses, blocks, CurvatureConfig(kind=kind), outputs=out)
        print(f"  call {call}: {time.perf_counter() - start:.3f} s", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
