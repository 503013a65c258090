"""Empirical Fisher blocks ``(1/S)·Σ_s g_s g_sᵀ`` in factor form (``F`` = per-sample gradients)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qnewton.curvature.kind import BuildInputs, CurvatureKind
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample import factor_rows
from qnewton.curvature.products import JacobianProducts, ProductContext, fisher_block
from qnewton.curvature.representation import CurvatureBlock
from qnewton.curvature.structured import factor_block


class FisherCurvature(CurvatureKind):
    """The ``S×N`` per-sample gradients ``g_s = ∇ losses[s]`` with ``scale = 1/S``.

    The ``g_s`` are per-sample gradients only if the model has no batch-coupling layers (e.g.
    BatchNorm in training mode); otherwise they are the gradients of each loss term. Parameters
    of layers with a per-sample handler (linear, convolution, embedding, layer norm, …) take a
    one-backward-pass fast path (:mod:`qnewton.curvature.per_sample`); other parameters use
    batched backward passes seeded by one-hot vectors (docs/method.md §4.7).
    """

    name = "fisher"
    psd = True
    has_matrix_free = True
    aligned_rows = True

    def stored_elements(self, n: int, num_samples: int, num_outputs: int) -> int:
        return num_samples * n

    def storage(self, n: int, num_samples: int, num_outputs: int, dtype_name: str) -> str:
        return f"as a {num_samples}×{n} {dtype_name} factor (empirical Fisher, one row per sample)"

    def budget_advice(self, num_samples: int, num_outputs: int) -> str:
        return "use fewer samples per step or a larger budget"

    def build(self, inputs: BuildInputs) -> list[CurvatureBlock | None]:
        losses, config = inputs.losses, inputs.config
        s = losses.numel()
        todo = [b for b, ok in zip(inputs.blocks, inputs.built, strict=True) if ok]
        factors = factor_rows(losses, [torch.ones_like(losses)], s, todo, config,
                              samples=inputs.samples, paths=inputs.paths, structured=True)
        k = inputs.curvature_samples
        return [
            factor_block(b.name, "fisher", factors[id(b)], scale=1.0 / k) if ok else None
            for b, ok in zip(inputs.blocks, inputs.built, strict=True)
        ]

    def matrix_free(self, block: ParamBlock, grads: Sequence[torch.Tensor],
                    ctx: ProductContext) -> CurvatureBlock:
        return fisher_block(block, ctx, self.name)

    def quadratic(self, losses: torch.Tensor, outputs: torch.Tensor | None,
                  params: Sequence[torch.Tensor], delta: torch.Tensor,
                  bypass: bool = False) -> float:
        """``(1/S)·‖J Δ‖²`` with ``J = ∂losses/∂θ`` (one double-backward product)."""
        jv = JacobianProducts(losses, params).jvp(delta.to(torch.float64)).to(torch.float64)
        return float(jv.square().sum() / losses.numel())
