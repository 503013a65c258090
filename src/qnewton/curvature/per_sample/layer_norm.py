"""Layer normalization (``nn.LayerNorm``, ``F.layer_norm``): per-sample gradients of γ and β.

``y = x̂ ⊙ γ + β`` with ``x̂ = (x − μ)·rstd`` normalized over the trailing ``normalized_shape``
dimensions of each row, so the gradient of sample s is ``Σ_t δ_t ⊙ x̂_t`` for γ and ``Σ_t δ_t``
for β, over the sample's T rows. x̂ is rebuilt from the node's saved input, mean and rstd (in the
result dtype). The statistics of a row involve that row only, so the rule is exact per sample.
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
class _LayerNorm:
    x: torch.Tensor  # (*rows, *normalized_shape)
    mean: torch.Tensor  # (*rows, 1, …, 1)
    rstd: torch.Tensor
    width: int  # elements of normalized_shape


class LayerNormHandler(NodeHandler):
    """``NativeLayerNormBackward0``: γ at input 1 (role ``"weight"``), β at input 2
    (``"bias"``)."""

    node_types = ("NativeLayerNormBackward0",)

    def role(self, node: object, position: int, transposed: bool) -> str | None:
        return None if transposed else {1: "weight", 2: "bias"}.get(position)

    def prepare(self, node: object, num_samples: int) -> _LayerNorm:
        x = saved_tensor(node, "input")
        mean, rstd = saved_tensor(node, "result1"), saved_tensor(node, "result2")
        shape = saved(node, "normalized_shape")
        if not isinstance(shape, list | tuple) or not 0 < len(shape) <= x.ndim:
            raise Unsupported(f"layer norm normalized_shape {shape!r}")
        width = torch.Size(shape).numel()
        lead = x.shape[: x.ndim - len(shape)]
        if mean.shape[: len(lead)] != lead or rstd.shape != mean.shape or mean.numel() != (
                lead.numel()):
            raise Unsupported("layer norm statistics do not match the input")
        positions(lead.numel(), num_samples)
        return _LayerNorm(x, mean, rstd, width)

    def workspace(self, ctx: _LayerNorm, role: str, num_samples: int) -> int:
        return 0 if role == "bias" else 2 * ctx.x.numel() // num_samples

    def per_sample(self, ctx: _LayerNorm, role: str, delta: torch.Tensor, r0: int, r1: int,
                   num_samples: int, dtype: torch.dtype) -> torch.Tensor:
        if delta.shape != ctx.x.shape:
            raise Unsupported("δ does not match the layer norm input")
        rows = ctx.x.numel() // ctx.width
        k = r1 - r0
        t = rows // num_samples
        d = delta.reshape(rows, ctx.width)[r0 * t : r1 * t].to(dtype)
        if role == "bias":
            return d.reshape(k, t, -1).sum(dim=1)
        x = ctx.x.reshape(rows, ctx.width)[r0 * t : r1 * t].to(dtype)
        mean = ctx.mean.reshape(rows, 1)[r0 * t : r1 * t].to(dtype)
        rstd = ctx.rstd.reshape(rows, 1)[r0 * t : r1 * t].to(dtype)
        return (d * ((x - mean) * rstd)).reshape(k, t, -1).sum(dim=1)
