"""Exact Hessian blocks ``∂²L/∂θ_b²`` of the mean loss (no cross-block terms), dense."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qnewton.curvature.autograd import BatchedVJP, flat_rows
from qnewton.curvature.kind import BuildInputs, CurvatureKind
from qnewton.curvature.memory import chunk_rows
from qnewton.curvature.params import ParamBlock, flatten_block
from qnewton.curvature.products import ProductContext, hessian_block, split_flat
from qnewton.curvature.representation import CurvatureBlock, DenseBlock


def symmetrize_(h: torch.Tensor, tile: int = 1024) -> torch.Tensor:
    """In-place ``h ← (h + hᵀ)/2`` tile by tile (no second N×N buffer)."""
    n = h.shape[0]
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(i0, n, tile):
            j1 = min(n, j0 + tile)
            avg = (h[i0:i1, j0:j1] + h[j0:j1, i0:i1].T) / 2
            h[i0:i1, j0:j1] = avg
            h[j0:j1, i0:i1] = avg.T
    return h


class HessianCurvature(CurvatureKind):
    """Built row-chunk by row-chunk from batched Hessian-vector products (double backward over
    the block's gradient), then symmetrized ``(H + Hᵀ)/2``. May be indefinite; peak memory stays
    near one N×N block (docs/method.md §4.7)."""

    name = "hessian"
    psd = False
    per_sample = False
    needs_gradient_graph = True
    has_matrix_free = True

    def stored_elements(self, n: int, num_samples: int, num_outputs: int) -> int:
        return n * n

    def storage(self, n: int, num_samples: int, num_outputs: int, dtype_name: str) -> str:
        return f"as a dense {n}×{n} {dtype_name} matrix"

    def budget_advice(self, num_samples: int, num_outputs: int) -> str:
        return "use curvature='fisher' or 'ggn' (factor form), smaller blocks, or a larger budget"

    def build(self, inputs: BuildInputs) -> list[CurvatureBlock | None]:
        return [
            self._block(b, g_b, inputs) if ok else None
            for b, g_b, ok in zip(inputs.blocks, inputs.grads, inputs.built, strict=True)
        ]

    @staticmethod
    def _block(block: ParamBlock, g_b, inputs: BuildInputs) -> CurvatureBlock:
        config = inputs.config
        n = block.numel
        ref = block.params[0]
        h = torch.zeros((n, n), dtype=config.dtype, device=ref.device)
        g_flat = flatten_block(g_b)
        if g_flat.requires_grad:  # otherwise the loss is at most linear in the block: H = 0
            vjp = BatchedVJP()
            k = chunk_rows(config.chunk_size, n, n * g_flat.element_size())
            for r0 in range(0, n, k):
                r1 = min(n, r0 + k)
                eye = torch.zeros((r1 - r0, n), dtype=g_flat.dtype, device=g_flat.device)
                idx = torch.arange(r0, r1, device=eye.device)
                eye[idx - r0, idx] = 1
                rows = vjp(g_flat, block.params, eye)
                h[r0:r1] = flat_rows(rows, r1 - r0).detach().to(config.dtype)
            symmetrize_(h)
        return DenseBlock(block.name, "hessian", h, psd=False)

    def matrix_free(self, block: ParamBlock, grads: Sequence[torch.Tensor],
                    ctx: ProductContext) -> CurvatureBlock:
        return hessian_block(block, grads, ctx)

    def quadratic(self, losses: torch.Tensor, outputs: torch.Tensor | None,
                  params: Sequence[torch.Tensor], delta: torch.Tensor,
                  bypass: bool = False) -> float:
        """``Δ·∂(gᵀΔ)/∂θ`` (one gradient with its graph, one double backward)."""
        params = list(params)
        grads = torch.autograd.grad(losses.mean(), params, create_graph=True, retain_graph=True,
                                    allow_unused=True)
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not live:
            return 0.0
        pieces = split_flat(delta.to(torch.float64), params)
        hv = torch.autograd.grad([grads[i] for i in live], [params[i] for i in live],
                                 grad_outputs=[pieces[i].to(grads[i].dtype) for i in live],
                                 retain_graph=True, allow_unused=True)
        return float(sum((pieces[i].to(torch.float64) * h.to(torch.float64)).sum()
                         for i, h in zip(live, hv, strict=True) if h is not None))
