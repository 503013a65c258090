"""Convolutions (``Conv1d``, ``Conv2d``): per-sample gradients through im2col.

A convolution is a linear layer applied at every output position ℓ to the input patch
``u_ℓ`` (C_in·K values, K the kernel size): ``z_ℓ = W u_ℓ + b`` with ``W`` reshaped to
``(C_out, C_in·K)``. So the gradient of sample s is ``Σ_ℓ δ_ℓ u_ℓᵀ`` for the weight and
``Σ_ℓ δ_ℓ`` for the bias, summed over the positions of the sample's T input rows (Goodfellow
2015, arXiv 1510.01799). The patches come from ``torch.nn.functional.unfold`` with the node's own
stride, padding and dilation; with ``groups = g`` each group is its own such layer. 1-D inputs
are unfolded as images of height 1. Transposed and 3-D convolutions are refused (generic path).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from qnewton.curvature.per_sample.handler import (
    NodeHandler,
    Unsupported,
    positions,
    saved,
    saved_tensor,
)


@dataclass(frozen=True)
class _Conv:
    x: torch.Tensor  # the input (S·T, C_in, *spatial), as saved by the node
    weight_shape: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


def _ints(value: object, dims: int, what: str) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, list | tuple) else (value,)
    if len(values) == 1:
        values = values * dims
    if len(values) != dims or not all(isinstance(v, int) for v in values):
        raise Unsupported(f"convolution {what} {value!r}")
    return values


class ConvHandler(NodeHandler):
    """``ConvolutionBackward0`` with weight at input 1 and bias at input 2 (roles ``"weight"``,
    ``"bias"``); 1-D and 2-D, any stride, padding, dilation and groups, not transposed."""

    node_types = ("ConvolutionBackward0",)

    def role(self, node: object, position: int, transposed: bool) -> str | None:
        if transposed:
            return None
        return {1: "weight", 2: "bias"}.get(position)

    def prepare(self, node: object, num_samples: int) -> _Conv:
        if saved(node, "transposed"):
            raise Unsupported("transposed convolution")
        x = saved_tensor(node, "input")
        w = saved_tensor(node, "weight")
        dims = x.ndim - 2
        if dims not in (1, 2) or w.ndim != x.ndim:
            raise Unsupported(f"{dims}-D convolution")
        groups = saved(node, "groups")
        if not isinstance(groups, int) or groups < 1 or w.shape[0] % groups:
            raise Unsupported(f"convolution groups {groups!r}")
        if x.shape[1] != w.shape[1] * groups:
            raise Unsupported("convolution input channels do not match the weight")
        positions(x.shape[0], num_samples)
        return _Conv(x, tuple(w.shape), _ints(saved(node, "stride"), dims, "stride"),
                     _ints(saved(node, "padding"), dims, "padding"),
                     _ints(saved(node, "dilation"), dims, "dilation"), groups)

    def workspace(self, ctx: _Conv, role: str, num_samples: int) -> int:
        if role == "bias":
            return 0
        t = ctx.x.shape[0] // num_samples
        kernel = ctx.weight_shape[1:]
        out_positions = 1
        for size, k, st, p, d in zip(ctx.x.shape[2:], kernel[1:], ctx.stride, ctx.padding,
                                     ctx.dilation, strict=True):
            out_positions *= max(1, (size + 2 * p - d * (k - 1) - 1) // st + 1)
        return 2 * t * ctx.x.shape[1] * torch.Size(kernel[1:]).numel() * out_positions

    def per_sample(self, ctx: _Conv, role: str, delta: torch.Tensor, r0: int, r1: int,
                   num_samples: int, dtype: torch.dtype) -> torch.Tensor:
        x = ctx.x
        c_out, g = ctx.weight_shape[0], ctx.groups
        if delta.ndim != x.ndim or delta.shape[:2] != (x.shape[0], c_out):
            raise Unsupported("δ does not match the convolution output")
        k = r1 - r0
        t = x.shape[0] // num_samples
        d = delta[r0 * t : r1 * t].to(dtype)
        if role == "bias":
            return d.reshape(k, t, c_out, -1).sum(dim=(1, 3))
        xs = x[r0 * t : r1 * t].to(dtype)
        kernel, stride, padding, dilation = (ctx.weight_shape[2:], ctx.stride, ctx.padding,
                                             ctx.dilation)
        if x.ndim == 3:  # Conv1d: an image of height 1
            xs = xs.unsqueeze(2)
            kernel, stride = (1, *kernel), (1, *stride)
            padding, dilation = (0, *padding), (1, *dilation)
        cols = F.unfold(xs, kernel_size=kernel, dilation=dilation, padding=padding,
                        stride=stride)  # (k·T, C_in·K, L), channel-major like the weight
        length = cols.shape[-1]
        if d[0, 0].numel() != length:
            raise Unsupported("δ positions do not match the convolution patches")
        cols = cols.reshape(k, t, g, -1, length)
        d = d.reshape(k, t, g, c_out // g, length)
        # per group: Σ_{t, ℓ} δ_{t,o,ℓ} u_{t,i,ℓ} → (k, g, C_out/g, C_in/g·K) = (k, weight.numel)
        return torch.einsum("ktgol,ktgil->kgoi", d, cols).reshape(k, -1)
