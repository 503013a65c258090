"""The code release's Newton step, reimplemented as the baseline it is compared with.

The release (UNITES-Lab/q-newton, arXiv 2405.00252) forms per-sample gradients with ``einsum``
outer products, the dense empirical Fisher ``F = JᵀJ/B`` per parameter tensor, regularizes it as
``F + ε·max|F|·I`` and applies an explicit ``torch.inverse`` (docs/method.md §6, "Explicit-inverse
baseline"). Nothing here is used by qnewton itself.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn


def release_per_sample_grads(
    model: nn.Sequential, x: torch.Tensor, y: torch.Tensor
) -> list[tuple[str, torch.Tensor]]:
    """Per-sample gradients ``J (B×N)`` per parameter tensor of a Linear/Tanh ``Sequential``, the
    release's way: activations and output gradients, then ``einsum`` outer products."""
    acts: list[torch.Tensor] = []
    outs: list[torch.Tensor] = []
    h = x
    for layer in model:
        if isinstance(layer, nn.Linear):
            acts.append(h.detach())
            h = layer(h)
            h.retain_grad()
            outs.append(h)
        else:
            h = layer(h)
    losses = F.cross_entropy(h, y, reduction="none")
    losses.sum().backward()
    model.zero_grad(set_to_none=True)
    result = []
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name, a, z in zip(names, acts, outs, strict=True):
        delta = z.grad.detach()
        per_sample = torch.einsum("bo,bi->boi", delta, a).reshape(a.shape[0], -1)
        result.append((f"{name}.weight", per_sample))
        result.append((f"{name}.bias", delta))
    return result


def release_block_direction(j: torch.Tensor, eps: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The release's Newton direction for one block: ``(F + ε·max|F|·I)⁻¹ g`` with the dense
    ``F = JᵀJ/B`` and an explicit ``torch.inverse``. Returns the direction and phase seconds."""
    b = j.shape[0]
    t0 = time.perf_counter()
    fisher = torch.einsum("bi,bj->ij", j, j) / b
    t1 = time.perf_counter()
    fisher.diagonal().add_(eps * float(fisher.abs().max()))
    inv = torch.inverse(fisher)
    del fisher
    t2 = time.perf_counter()
    direction = inv @ j.mean(dim=0)
    t3 = time.perf_counter()
    return direction, {"form": t1 - t0, "inverse": t2 - t1, "multiply": t3 - t2}
