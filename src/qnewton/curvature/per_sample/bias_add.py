"""A parameter added with broadcasting: ``z = u + b`` (``AddBackward0``), e.g. the bias that
``F.linear`` adds after a matrix product on a non-contiguous 3-D input (the packed input
projection of ``nn.MultiheadAttention``).

When ``b`` has the shape of z's trailing dimensions, the output viewed as rows ``(R, numel(b))``
receives ``b`` once per row, so the gradient of sample s is ``Σ δ_r`` over the rows of sample s
(R = S·T rows; their order — sample-major or, for sequence-first tensors, time-major — is found
by the engine's layout probe; docs/method.md §4.7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qnewton.curvature.per_sample.handler import NodeHandler, Unsupported, positions, saved


@dataclass(frozen=True)
class _BiasAdd:
    numel: int
    shape: tuple[int, ...]
    perm: torch.Tensor | None = None  # row order → sample-major order


class BiasAddHandler(NodeHandler):
    """``AddBackward0`` with the parameter at input 1 (``alpha`` 1) or 0; role ``"add"``."""

    node_types = ("AddBackward0",)
    reorderable = True

    def role(self, node: object, position: int, transposed: bool) -> str | None:
        return None if transposed else "add"

    def prepare(self, node: object, num_samples: int) -> list[_BiasAdd]:
        try:
            alpha = float(saved(node, "alpha"))
        except (TypeError, ValueError) as exc:
            raise Unsupported("add with a non-numeric alpha") from exc
        shapes = []
        for pos, (child, _) in enumerate(node.next_functions):
            var = getattr(child, "variable", None) if child is not None else None
            if var is not None:
                if pos == 1 and alpha != 1.0:
                    raise Unsupported("add with alpha other than 1")
                shapes.append(tuple(var.shape))
        if len(set(shapes)) != 1:
            raise Unsupported("not one parameter added")
        shape = shapes[0]
        return _BiasAdd(int(torch.Size(shape).numel()), shape)

    def delta_rows(self, ctx: _BiasAdd, delta: torch.Tensor) -> torch.Tensor:
        if tuple(delta.shape[delta.ndim - len(ctx.shape):]) != ctx.shape or (
                delta.ndim <= len(ctx.shape)):
            raise Unsupported("the parameter is not broadcast over leading dimensions")
        return delta.reshape(-1, ctx.numel)

    def reorder(self, ctx: _BiasAdd, perm: torch.Tensor) -> _BiasAdd:
        return _BiasAdd(ctx.numel, ctx.shape, perm)

    def per_sample(self, ctx: _BiasAdd, role: str, delta: torch.Tensor, r0: int, r1: int,
                   num_samples: int, dtype: torch.dtype) -> torch.Tensor:
        d = self.delta_rows(ctx, delta)
        t = positions(d.shape[0], num_samples)
        rows = slice(r0 * t, r1 * t) if ctx.perm is None else ctx.perm[r0 * t : r1 * t]
        d = d[rows]
        return d.to(dtype).reshape(r1 - r0, t, ctx.numel).sum(dim=1)
