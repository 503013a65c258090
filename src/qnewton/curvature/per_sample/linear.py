"""Linear layers: ``z = x Wᵀ + b`` (``addmm``) or ``z = x Wᵀ`` / ``z = x W`` (``mm``).

The gradient of sample s is ``Σ_t δ_{s,t} x_{s,t}ᵀ`` for ``W`` (``Σ_t x_{s,t} δ_{s,t}ᵀ`` when the
parameter is used untransposed, ``z = x W``) and ``Σ_t δ_{s,t}`` for the bias, with δ the gradient
flowing into ``z`` (Goodfellow 2015, arXiv 1510.01799). For sequence inputs ``(S, T, in)`` torch
flattens to S·T rows, sample-major, so the T positions of a sample are consecutive rows.
"""

from __future__ import annotations

import torch

from qnewton.curvature.per_sample.handler import (
    NodeHandler,
    Unsupported,
    positions,
    saved,
    saved_tensor,
)


class LinearHandler(NodeHandler):
    """``AddmmBackward0`` (bias at input 0, ``Wᵀ`` or ``W`` at input 2) and ``MmBackward0``
    (``Wᵀ`` or ``W`` at input 1); roles ``"wt"`` (used as ``Wᵀ``), ``"w"`` and ``"bias"``.
    ``ctx`` is the saved 2-D input ``x`` (S·T × in), or ``(x, perm)`` with x's rows reordered
    sample-major when the engine's layout probe found them time-major."""

    node_types = ("AddmmBackward0", "MmBackward0")
    reorderable = True

    def role(self, node: object, position: int, transposed: bool) -> str | None:
        matrix = "wt" if transposed else "w"
        if type(node).__name__ == "AddmmBackward0":
            return {0: None if transposed else "bias", 2: matrix}.get(position)
        return matrix if position == 1 else None

    def prepare(self, node: object, num_samples: int) -> torch.Tensor:
        if type(node).__name__ == "AddmmBackward0":
            try:
                unit = float(saved(node, "alpha")) == 1.0 and float(saved(node, "beta")) == 1.0
            except (TypeError, ValueError) as exc:
                raise Unsupported("addmm scaling is not a number") from exc
            if not unit:
                raise Unsupported("addmm with alpha or beta other than 1")
            x = saved_tensor(node, "mat1")
        else:
            x = saved_tensor(node, "self")
        if x.ndim != 2:
            raise Unsupported("linear input is not 2-D")
        positions(x.shape[0], num_samples)
        return x

    def reorder(self, ctx: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = ctx[0] if isinstance(ctx, tuple) else ctx
        return x[perm.to(x.device)], perm

    def kronecker(self, ctx: torch.Tensor | tuple[torch.Tensor, torch.Tensor], role: str,
                  delta: torch.Tensor, num_samples: int, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One input row per sample: ``Wᵀ``'s gradient ``δ_s ⊗ x_s`` and the bias's ``δ_s ⊗ 1``
        (``W`` used untransposed, or a sequence of rows per sample, has no such form here)."""
        if isinstance(ctx, tuple) or role == "w" or ctx.shape[0] != num_samples:
            return None
        if delta.ndim != 2 or delta.shape[0] != num_samples:
            raise Unsupported("δ does not match the linear input")
        g = delta.detach().to(dtype)
        if role == "bias":
            return g, torch.ones((num_samples, 1), dtype=dtype, device=g.device)
        return g, ctx.detach().to(dtype)

    def per_sample(self, ctx: torch.Tensor | tuple[torch.Tensor, torch.Tensor], role: str,
                   delta: torch.Tensor, r0: int, r1: int, num_samples: int,
                   dtype: torch.dtype) -> torch.Tensor:
        x, perm = ctx if isinstance(ctx, tuple) else (ctx, None)
        if delta.ndim != 2 or delta.shape[0] != x.shape[0]:
            raise Unsupported("δ does not match the linear input")
        k = r1 - r0
        t = x.shape[0] // num_samples
        # time-major rows are taken in sample-major order (x was reordered once by reorder)
        d = delta[r0 * t : r1 * t] if perm is None else delta[perm[r0 * t : r1 * t].to(
            delta.device)]
        d = d.to(dtype).reshape(k, t, -1)
        if role == "bias":
            return d.sum(dim=1)
        xs = x[r0 * t : r1 * t].to(dtype).reshape(k, t, -1)
        a, c = (d, xs) if role == "wt" else (xs, d)
        return torch.bmm(a.transpose(1, 2), c).reshape(k, -1)
