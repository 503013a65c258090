"""Embeddings (``nn.Embedding``, ``F.embedding``): per-sample gradients by index-add.

Row i of the output is row ``idx_i`` of the table, so the gradient of sample s adds δ_i into table
row ``idx_i`` for each of the sample's T index positions i (the same row twice adds twice);
positions holding ``padding_idx`` contribute nothing, as in torch's own backward. Refused
(generic path): ``scale_grad_by_freq`` (it rescales by counts over the whole batch) and sparse
gradients.
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


@dataclass(frozen=True)
class _Embedding:
    indices: torch.Tensor  # flat (S·T,)
    padding_idx: int  # < 0: none
    num_embeddings: int


class EmbeddingHandler(NodeHandler):
    """``EmbeddingBackward0``: the table at input 0 (role ``"weight"``)."""

    node_types = ("EmbeddingBackward0",)

    def role(self, node: object, position: int, transposed: bool) -> str | None:
        return "weight" if position == 0 and not transposed else None

    def prepare(self, node: object, num_samples: int) -> _Embedding:
        if saved(node, "scale_grad_by_freq") or saved(node, "sparse"):
            raise Unsupported("embedding with scale_grad_by_freq or sparse gradients")
        indices = saved_tensor(node, "indices").reshape(-1)
        padding_idx = saved(node, "padding_idx")
        num = saved(node, "weight_sym_argsize_0")
        if not isinstance(padding_idx, int) or not isinstance(num, int):
            raise Unsupported("embedding padding_idx or table size not known")
        positions(indices.numel(), num_samples)
        return _Embedding(indices, padding_idx, num)

    def workspace(self, ctx: _Embedding, role: str, num_samples: int) -> int:
        return 2 * (ctx.indices.numel() // num_samples)

    def per_sample(self, ctx: _Embedding, role: str, delta: torch.Tensor, r0: int, r1: int,
                   num_samples: int, dtype: torch.dtype) -> torch.Tensor:
        rows = ctx.indices.numel()
        if delta.ndim < 1 or delta.numel() != rows * delta.shape[-1]:
            raise Unsupported("δ does not match the embedding indices")
        k = r1 - r0
        t = rows // num_samples
        d = delta.reshape(rows, -1)[r0 * t : r1 * t].to(dtype)
        idx = ctx.indices[r0 * t : r1 * t].to(device=d.device, dtype=torch.long)
        sample = torch.arange(k, device=d.device).repeat_interleave(t)
        if ctx.padding_idx >= 0:
            keep = idx != ctx.padding_idx
            idx, sample, d = idx[keep], sample[keep], d[keep]
        out = d.new_zeros((k * ctx.num_embeddings, d.shape[1]))
        out.index_add_(0, sample * ctx.num_embeddings + idx, d)
        return out.reshape(k, -1)
