"""Batch normalization in evaluation mode: per-sample gradients of γ and β.

With running statistics (``model.eval()``, or frozen statistics) ``y = x̂ ⊙ γ + β`` with
``x̂ = (x − running_mean)/√(running_var + ε)`` per channel (dimension 1), so the gradient of sample
s is ``Σ δ ⊙ x̂`` for γ and ``Σ δ`` for β, summed over the sample's rows and spatial positions. In
training mode the batch statistics couple all samples and the handler refuses the node: its
parameters take the generic path (and layers before it are caught by the engine's check).
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
class _BatchNorm:
    x: torch.Tensor  # (S·T, C, *spatial)
    mean: torch.Tensor  # (C,)
    var: torch.Tensor  # (C,)
    eps: float


class BatchNormHandler(NodeHandler):
    """``NativeBatchNormBackward0`` with ``training=False``: γ at input 1 (role ``"weight"``),
    β at input 2 (``"bias"``)."""

    node_types = ("NativeBatchNormBackward0",)

    def role(self, node: object, position: int, transposed: bool) -> str | None:
        return None if transposed else {1: "weight", 2: "bias"}.get(position)

    def prepare(self, node: object, num_samples: int) -> _BatchNorm:
        if saved(node, "training") is not False:
            raise Unsupported("batch norm in training mode couples the samples")
        x = saved_tensor(node, "input")
        mean, var = saved_tensor(node, "running_mean"), saved_tensor(node, "running_var")
        eps = saved(node, "eps")
        if x.ndim < 2 or mean.shape != (x.shape[1],) or var.shape != mean.shape:
            raise Unsupported("batch norm statistics do not match the input")
        if not isinstance(eps, float | int):
            raise Unsupported("batch norm eps is not a number")
        positions(x.shape[0], num_samples)
        return _BatchNorm(x, mean, var, float(eps))

    def workspace(self, ctx: _BatchNorm, role: str, num_samples: int) -> int:
        return 0 if role == "bias" else 2 * ctx.x.numel() // num_samples

    def per_sample(self, ctx: _BatchNorm, role: str, delta: torch.Tensor, r0: int, r1: int,
                   num_samples: int, dtype: torch.dtype) -> torch.Tensor:
        if delta.shape != ctx.x.shape:
            raise Unsupported("δ does not match the batch norm input")
        k = r1 - r0
        t = ctx.x.shape[0] // num_samples
        c = ctx.x.shape[1]
        d = delta[r0 * t : r1 * t].to(dtype).reshape(k, t, c, -1)
        if role == "bias":
            return d.sum(dim=(1, 3))
        x = ctx.x[r0 * t : r1 * t].to(dtype).reshape(k, t, c, -1)
        scale = (ctx.var.to(dtype) + ctx.eps).rsqrt().reshape(c, 1)
        x_hat = (x - ctx.mean.to(dtype).reshape(c, 1)) * scale
        return (d * x_hat).sum(dim=(1, 3))
