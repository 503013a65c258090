"""Embedding bags (``nn.EmbeddingBag``, ``F.embedding_bag``): per-sample gradients by index-add.

Bag b reduces the table rows of its indices, so its output gradient δ_b flows back into those
rows: δ_b (times the index's ``per_sample_weights``) for ``mode="sum"``, δ_b / (the bag's number of
non-padding indices) for ``"mean"``, and for ``"max"`` component d of δ_b into the one row that
won that component (nothing for an empty bag). Indices equal to ``padding_idx`` contribute
nothing. Bags are samples (or T
consecutive bags per sample), so the gradient of sample s adds up its bags' contributions.
Refused (generic path): ``scale_grad_by_freq`` and sparse gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qnewton.curvature.per_sample.handler import (
    NodeHandler,
    Unsupported,
    positions,
    saved,
    saved_tensor,
)

_SUM, _MEAN, _MAX = 0, 1, 2


@dataclass(frozen=True)
class _Bags:
    indices: torch.Tensor  # flat (n,)
    bag: torch.Tensor  # (n,): the bag of each index
    coef: torch.Tensor | None  # (n,) factor of each index (sum with weights, mean), or None
    keep: torch.Tensor  # (n,) bool: not padding
    max_indices: torch.Tensor | None  # (bags, dim) for mode max
    nonempty: torch.Tensor  # (bags,) bool: the bag has a non-padding index
    mode: int
    num_bags: int
    num_embeddings: int


class EmbeddingBagHandler(NodeHandler):
    """``EmbeddingBagBackward0``: the table at input 0 (role ``"weight"``)."""

    node_types = ("EmbeddingBagBackward0",)

    def role(self, node: object, position: int, transposed: bool) -> str | None:
        return "weight" if position == 0 and not transposed else None

    def prepare(self, node: object, num_samples: int) -> _Bags:
        if saved(node, "scale_grad_by_freq") or saved(node, "sparse"):
            raise Unsupported("embedding bag with scale_grad_by_freq or sparse gradients")
        mode, padding_idx = saved(node, "mode"), saved(node, "padding_idx")
        num = saved(node, "weight_sym_argsize_0")
        if mode not in (_SUM, _MEAN, _MAX) or not isinstance(padding_idx, int) or not isinstance(
                num, int):
            raise Unsupported(f"embedding bag mode {mode!r}")
        indices = saved_tensor(node, "indices").reshape(-1).long()
        offsets = saved_tensor(node, "offsets").reshape(-1).long()
        num_bags = saved_tensor(node, "result2").numel()  # bag sizes, one per bag in every mode
        if offsets.numel() < num_bags or num_bags < 1:
            raise Unsupported("embedding bag offsets do not match the bags")
        positions(num_bags, num_samples)
        n = indices.numel()
        pos = torch.arange(n, device=offsets.device)
        bag = torch.searchsorted(offsets[:num_bags].contiguous(), pos, right=True) - 1
        keep = indices != padding_idx if padding_idx >= 0 else torch.ones_like(indices, dtype=bool)
        coef = None
        max_indices = None
        counts = torch.bincount(bag[keep], minlength=num_bags)
        if mode == _MAX:  # an empty bag outputs zeros and reports row 0: no gradient
            max_indices = saved_tensor(node, "result3").long()
        elif mode == _MEAN:
            coef = 1.0 / counts.clamp(min=1)[bag].double()
        else:
            weights = saved(node, "per_sample_weights")
            if isinstance(weights, torch.Tensor):
                coef = weights.detach().reshape(-1)
        return _Bags(indices, bag, coef, keep, max_indices, counts > 0, mode, num_bags, num)

    def workspace(self, ctx: _Bags, role: str, num_samples: int) -> int:
        return 2 * max(1, ctx.indices.numel() // num_samples)

    def per_sample(self, ctx: _Bags, role: str, delta: torch.Tensor, r0: int, r1: int,
                   num_samples: int, dtype: torch.dtype) -> torch.Tensor:
        if delta.ndim != 2 or delta.shape[0] != ctx.num_bags:
            raise Unsupported("δ does not match the embedding bags")
        k, dim = r1 - r0, delta.shape[1]
        t = ctx.num_bags // num_samples
        out = delta.new_zeros((k * ctx.num_embeddings * dim,), dtype=dtype)
        if ctx.mode == _MAX:
            if ctx.max_indices is None or ctx.max_indices.shape != delta.shape:
                raise Unsupported("embedding bag max indices do not match δ")
            rows = ctx.max_indices[r0 * t : r1 * t]
            d = delta[r0 * t : r1 * t].to(dtype)
            sample = (torch.arange(k * t, device=d.device) // t).unsqueeze(1)
            flat = (sample * ctx.num_embeddings + rows) * dim + torch.arange(dim, device=d.device)
            valid = ctx.nonempty[r0 * t : r1 * t].unsqueeze(1).expand_as(rows)
            out.index_add_(0, flat[valid], d[valid])
            return out.reshape(k, -1)
        sel = ctx.keep & (ctx.bag >= r0 * t) & (ctx.bag < r1 * t)
        bag, idx = ctx.bag[sel], ctx.indices[sel]
        contrib = delta.to(dtype)[bag]
        if ctx.coef is not None:
            contrib = contrib * ctx.coef[sel].to(dtype).unsqueeze(1)
        flat = ((bag // t - r0) * ctx.num_embeddings + idx).unsqueeze(1) * dim + torch.arange(
            dim, device=contrib.device)
        out.index_add_(0, flat.reshape(-1), contrib.reshape(-1))
        return out.reshape(k, -1)
