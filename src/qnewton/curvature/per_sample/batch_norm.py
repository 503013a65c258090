"""Batch normalization: per-sample gradients of γ and β, in evaluation and in training mode.

``y = x̂ ⊙ γ + β`` per channel (dimension 1) with ``x̂ = (x − μ)·rstd``: the running statistics in
evaluation mode, the batch's statistics (saved by the node) in training mode. The gradient of
sample s is ``Σ δ ⊙ x̂`` for γ and ``Σ δ`` for β, summed over the sample's rows and spatial
positions — exact in both modes, since γ and β enter each sample's output only through its own
row. In training mode the statistics couple the samples for the layers *before* the norm; how
their rows are defined there is :func:`statistics_held` (docs/method.md §4.7).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from qnewton.curvature.per_sample.handler import (
    NodeHandler,
    Unsupported,
    positions,
    saved,
    saved_tensor,
)

NODE_TYPE = "NativeBatchNormBackward0"


@dataclass(frozen=True)
class _BatchNorm:
    x: torch.Tensor  # (S·T, C, *spatial)
    mean: torch.Tensor  # (C,)
    rstd: torch.Tensor  # (C,) = 1/√(var + ε)


class BatchNormHandler(NodeHandler):
    """``NativeBatchNormBackward0``: γ at input 1 (role ``"weight"``), β at input 2
    (``"bias"``)."""

    node_types = (NODE_TYPE,)

    def role(self, node: object, position: int, transposed: bool) -> str | None:
        return None if transposed else {1: "weight", 2: "bias"}.get(position)

    def prepare(self, node: object, num_samples: int) -> _BatchNorm:
        x = saved_tensor(node, "input")
        eps = saved(node, "eps")
        if not isinstance(eps, float | int):
            raise Unsupported("batch norm eps is not a number")
        if saved(node, "training") is False:
            mean = saved_tensor(node, "running_mean")
            rstd = (saved_tensor(node, "running_var") + float(eps)).rsqrt()
        else:  # the batch statistics the forward used (mean and 1/√(var + ε))
            mean, rstd = saved_tensor(node, "result1"), saved_tensor(node, "result2")
        if x.ndim < 2 or mean.shape != (x.shape[1],) or rstd.shape != mean.shape:
            raise Unsupported("batch norm statistics do not match the input")
        positions(x.shape[0], num_samples)
        return _BatchNorm(x, mean, rstd)

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
        x_hat = (x - ctx.mean.to(dtype).reshape(c, 1)) * ctx.rstd.to(dtype).reshape(c, 1)
        return (d * x_hat).sum(dim=(1, 3))


def training_nodes(nodes: list[object]) -> list[object]:
    """The training-mode batch-norm nodes among ``nodes`` whose statistics span several rows.

    A node whose input has one row normalizes each channel over that row's own positions: it
    is ``F.instance_norm`` (and ``InstanceNorm*d``), which calls batch norm on the input
    reshaped to ``(1, S·C, *spatial)``, so every statistic belongs to one sample; holding it
    would make the rows of the layers before the norm wrong where the exact ones cost nothing
    more (a conv before ``InstanceNorm2d``: 34% off, its bias given rows where its gradient is
    zero)."""
    out = []
    for n in nodes:
        if type(n).__name__ == NODE_TYPE:
            try:
                if saved(n, "training") is not False and saved_tensor(n, "input").shape[0] > 1:
                    out.append(n)
            except Unsupported:
                continue
    return out


@contextlib.contextmanager
def statistics_held(nodes: list[object]) -> Iterator[None]:
    """Backward passes through the training-mode batch norms ``nodes`` as if their batch
    statistics were constants: the gradient reaching the input is ``δ_y ⊙ γ·rstd`` instead of
    the exact one, which also flows through μ and σ² into every other sample.

    This is the approximation K-FAC implementations make for BatchNorm (each sample's rows as if
    the statistics were fixed numbers; Grosse & Martens 2016 treat normalization statistics the
    same way): the rows of layers before a training-mode norm then depend on their own sample
    only and cost one backward pass per seed, where the exact rows of each coupled loss term cost
    one backward pass per sample. The mean-loss gradient the step uses is never computed under
    these hooks: it stays exact.
    """
    handles = []

    def make(node: object):
        rstd = saved_tensor(node, "result2")
        weight = saved(node, "weight")
        scale = rstd if not isinstance(weight, torch.Tensor) else rstd * weight.detach()

        def hook(grad_inputs, grad_outputs):
            dy = grad_outputs[0]
            if dy is None or grad_inputs[0] is None:
                return None
            shape = (1, -1) + (1,) * (dy.ndim - 2)
            return (dy * scale.to(dy.dtype).reshape(shape), *grad_inputs[1:])

        return hook

    try:
        for n in nodes:
            handles.append(n.register_hook(make(n)))
        yield
    finally:
        for h in handles:
            h.remove()
