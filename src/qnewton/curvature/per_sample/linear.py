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
    SampleRows,
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
    mappable = True

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
        if x.shape[0] < num_samples or x.shape[0] % num_samples:
            return SampleRows(x)  # rows of parts of the batch: the engine maps them
        positions(x.shape[0], num_samples)
        return x

    def with_samples(self, ctx: object, sample: torch.Tensor) -> SampleRows:
        if not isinstance(ctx, SampleRows):
            raise Unsupported("only an unmapped input takes a sample map")
        return SampleRows(ctx.x, sample)

    def row_count(self, ctx: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> int:
        return (ctx[0] if isinstance(ctx, tuple) else ctx).shape[0]

    def reorder(self, ctx: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = ctx[0] if isinstance(ctx, tuple) else ctx
        return x[perm.to(x.device)], perm

    def kronecker(self, ctx: torch.Tensor | tuple[torch.Tensor, torch.Tensor], role: str,
                  delta: torch.Tensor, num_samples: int, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One input row per sample: ``Wᵀ``'s gradient ``δ_s ⊗ x_s`` and the bias's ``δ_s ⊗ 1``
        (``W`` used untransposed, or a sequence of rows per sample, has no such form here)."""
        if (isinstance(ctx, (tuple, SampleRows)) or role == "w"
                or ctx.shape[0] != num_samples):
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
        if isinstance(ctx, SampleRows):
            return self._mapped(ctx, role, delta, r0, r1, dtype)
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

    @staticmethod
    def _mapped(ctx: SampleRows, role: str, delta: torch.Tensor, r0: int, r1: int,
                dtype: torch.dtype) -> torch.Tensor:
        """:meth:`per_sample` for rows with a sample map: each row's gradient (``δ_r ⊗ x_r``,
        ``x_r ⊗ δ_r`` or ``δ_r``) added to its sample's."""
        if ctx.sample is None or delta.ndim != 2 or delta.shape[0] != ctx.x.shape[0]:
            raise Unsupported("δ does not match the linear input, or its rows are not mapped")
        sample = ctx.sample.to(delta.device)
        sel = ((sample >= r0) & (sample < r1)).nonzero().flatten()
        d = delta[sel].to(dtype)
        if role == "bias":
            piece = d
        else:
            xs = ctx.x[sel].to(dtype)
            a, c = (d, xs) if role == "wt" else (xs, d)
            piece = (a.unsqueeze(2) * c.unsqueeze(1)).reshape(sel.numel(), -1)
        out = torch.zeros((r1 - r0, piece.shape[1]), dtype=dtype, device=delta.device)
        return out.index_add_(0, sample[sel] - r0, piece)
