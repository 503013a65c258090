"""Finiteness from one scalar per tensor instead of an element-wise ``isfinite(...).all()`` pass.

A sum is NaN or ±∞ iff some entry is (NaN propagates; +∞ and −∞ together give NaN), or the sum
overflows. Overflow flags too, which is what we want: a block or gradient whose entries sum past
the dtype's range (≈1.8e308 in float64, 3.4e38 in float32) cannot be solved or applied
meaningfully either (docs/method.md §4.7, "Finite checks"). The sum is one read of the tensor
with no boolean temporary, and for many tensors the scalars are compared with one device sync.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def finite_sum(t: torch.Tensor) -> bool:
    """Whether ``t`` holds only finite values (``False`` also when its sum overflows)."""
    return bool(torch.isfinite(t.sum()))


def finite_each(tensors: Sequence[torch.Tensor]) -> list[bool]:
    """:func:`finite_sum` of every tensor, with one synchronisation for all of them."""
    if not tensors:
        return []
    sums = torch.stack([t.sum().to(torch.float64) for t in tensors])
    return [bool(v) for v in torch.isfinite(sums).tolist()]
