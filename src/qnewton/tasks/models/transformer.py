"""The Transformers of the ``text`` ("BERT-tiny") and ``lm`` ("GPT-tiny") tasks.

Attention is built from plain tensor ops (``nn.Linear`` projections, matmul, ``masked_fill``,
softmax, ``F.layer_norm``, ``F.gelu``), never ``nn.MultiheadAttention`` or
``F.scaled_dot_product_attention``: their fused kernels don't support the vmap-over-backward
(``torch.autograd.grad(..., is_grads_batched=True)``) the curvature code uses for per-sample
gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PAD_ID = 0  # the token id TransformerClassifier masks out by default


class SelfAttention(nn.Module):
    """Multi-head self-attention from plain tensor ops (no fused kernels).

    ``mask`` is a boolean tensor broadcastable to ``(B, heads, L, L)``; ``True`` = may attend.
    Every query must be allowed at least one key.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        dh = d // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.heads, dh).transpose(1, 2)  # (B, H, L, dh)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dh)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1)
        y = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d)
        return self.out(y)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(ln(x))`` then ``x + ffn(ln(x))`` with a GELU FFN."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ffn)
        self.ff2 = nn.Linear(ffn, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class _TransformerTrunk(nn.Module):
    """Token + learned positional embedding, pre-LN blocks and a final LayerNorm; subclasses
    add the head and say how positions may attend to each other."""

    def __init__(
        self, vocab_size: int, out_dim: int, max_len: int, dim: int, layers: int, heads: int,
        ffn: int,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, ffn) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, dim)`` after the final LayerNorm, attention limited by mask."""
        n = ids.shape[1]
        if n > self.max_len:
            raise ValueError(f"sequence length {n} exceeds the model's max_len {self.max_len}")
        h = self.tok(ids) + self.pos.weight[:n]
        for block in self.blocks:
            h = block(h, mask)
        return self.ln(h)


class TransformerClassifier(_TransformerTrunk):
    """BERT-tiny: token + learned positional embedding, bidirectional pre-LN blocks with a
    key-padding mask, final LayerNorm, mean-pool over non-pad tokens, linear classifier."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        max_len: int,
        dim: int,
        layers: int,
        heads: int,
        ffn: int,
        pad_id: int = PAD_ID,
    ) -> None:
        super().__init__(vocab_size, num_classes, max_len, dim, layers, heads, ffn)
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = ids != self.pad_id  # (B, L)
        h = self.encode(ids, keep[:, None, None, :])  # keys: (B, 1, 1, L)
        w = keep.to(h.dtype).unsqueeze(-1)
        pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)


class CharGPT(_TransformerTrunk):
    """GPT-tiny: token + learned positional embedding, causal pre-LN blocks, final LayerNorm,
    untied linear output head; returns logits ``(B, T, V)``."""

    def __init__(
        self, vocab_size: int, max_len: int, dim: int, layers: int, heads: int, ffn: int
    ) -> None:
        super().__init__(vocab_size, vocab_size, max_len, dim, layers, heads, ffn)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
        return self.head(self.encode(ids, causal))
