"""Generalized Gauss-Newton blocks ``(1/S)·Σ_s J_sᵀ H_s J_s`` in factor form."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qnewton.curvature.bypass import bypass_rows, fixed_output_gradients
from qnewton.curvature.config import CurvatureConfig
from qnewton.curvature.kind import OUTPUTS_NOT_USED, BuildInputs, ClosureError, CurvatureKind
from qnewton.curvature.loss_hessian import loss_hessian_sqrt
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample import factor_rows
from qnewton.curvature.products import (
    JacobianProducts,
    ProductContext,
    ggn_block,
    split_flat,
)
from qnewton.curvature.representation import CurvatureBlock
from qnewton.curvature.structured import append_rows, factor_block


class GGNCurvature(CurvatureKind):
    """``S·C`` factor rows ``J_sᵀ R_s[:, c]`` (row ``s·C + c``), ``J_s = ∂outputs_s/∂θ``, ``R_s``
    the symmetric PSD square root of ``H_s = ∂²losses[s]/∂outputs_s²``; ``scale = 1/S``.

    Negative eigenvalues of ``H_s`` (a loss non-convex in the outputs) are clamped to 0 so the
    result stays PSD. The loss Hessians come from ``C`` batched double-backward passes through the
    loss part of the graph only. Parameters with a per-sample handler get all ``S`` rows of
    column j from one backward pass seeded with ``R[:, :, j]`` (``C`` passes in all,
    :mod:`qnewton.curvature.per_sample`); the others take one batched backward pass per row
    (``S·C``) (docs/method.md §4.7). A loss term that bypasses the outputs (an L2 penalty)
    adds its own curvature as extra rows (:mod:`qnewton.curvature.bypass`).
    """

    name = "ggn"
    psd = True
    needs_outputs = True
    has_matrix_free = True
    aligned_rows = True

    def stored_elements(self, n: int, num_samples: int, num_outputs: int) -> int:
        return num_samples * num_outputs * n

    def storage(self, n: int, num_samples: int, num_outputs: int, dtype_name: str) -> str:
        return (f"as a {num_samples * num_outputs}×{n} {dtype_name} factor "
                f"(GGN, {num_samples} samples × {num_outputs} outputs)")

    def budget_advice(self, num_samples: int, num_outputs: int) -> str:
        return (f"use curvature='fisher' ({num_samples} rows), fewer samples per step or a "
                "larger budget")

    def seeds(self, sqrt_h: torch.Tensor, outputs: torch.Tensor, inputs: BuildInputs
              ) -> list[torch.Tensor]:
        """The backward seeds: row s·P + j of the factor is the per-sample gradient of
        ⟨seed_j, outputs⟩. Here P = C, seed_j[s] = R_s[:, j], so row s·C + j is J_sᵀ R_s[:, j]
        (one backward pass per j on the fast path)."""
        c = inputs.num_outputs
        return [sqrt_h[:, :, j].to(outputs.dtype).reshape(outputs.shape) for j in range(c)]

    def build(self, inputs: BuildInputs) -> list[CurvatureBlock | None]:
        todo = [b for b, ok in zip(inputs.blocks, inputs.built, strict=True) if ok]
        if not todo:
            return [None] * len(inputs.blocks)
        losses, outputs, config = inputs.losses, inputs.outputs, inputs.config
        s, c = inputs.num_samples, inputs.num_outputs
        sqrt_h = loss_hessian_sqrt(losses, outputs, s, c, config.dtype)
        factors = factor_rows(outputs, self.seeds(sqrt_h, outputs, inputs), s, todo, config,
                              min_row_elements=s * c, samples=inputs.samples,
                              paths=inputs.paths, structured=True)
        k = inputs.curvature_samples
        extra, notes, covered = bypass_rows(losses, outputs, todo, k, config.dtype)
        inputs.notes.update(notes)
        inputs.covered.update(covered)
        for b in todo:
            if id(b) in extra:
                factors[id(b)] = append_rows(factors[id(b)], extra[id(b)])
        return [
            factor_block(b.name, self.name, factors[id(b)], scale=1.0 / k) if ok else None
            for b, ok in zip(inputs.blocks, inputs.built, strict=True)
        ]

    def substitute(self, num_samples: int, num_outputs: int, config: CurvatureConfig
                   ) -> tuple[str, str] | None:
        """The Monte-Carlo GGN when the S·C exact rows would cost more than
        ``config.ggn_max_outputs`` Fishers (docs/method.md §4.7)."""
        limit = config.ggn_max_outputs
        if limit is None or num_outputs <= limit:
            return None
        k, c = num_samples, num_outputs
        return "ggn-mc", (f"{c} outputs per sample > ggn_max_outputs={limit}: the Monte-Carlo "
                          f"GGN ({k} rows) instead of the exact GGN ({k * c} rows)")

    def matrix_free(self, block: ParamBlock, grads: Sequence[torch.Tensor],
                    ctx: ProductContext) -> CurvatureBlock:
        return ggn_block(block, ctx, self.name)

    def quadratic(self, losses: torch.Tensor, outputs: torch.Tensor | None,
                  params: Sequence[torch.Tensor], delta: torch.Tensor,
                  bypass: bool = False) -> float:
        """``(1/S)·Σ_s ‖R_s J_s Δ‖²`` with ``J = ∂outputs/∂θ`` and ``R_s²`` the per-sample loss
        Hessian, negative eigenvalues clamped as in the blocks (one double-backward product);
        with ``bypass``, plus ``Δᵀ H_P Δ``, the curvature of the terms that bypass the outputs
        (one double backward through their own graph, :mod:`qnewton.curvature.bypass`)."""
        s = losses.numel()
        c = outputs.numel() // s
        jv = JacobianProducts(outputs, params).jvp(delta.to(torch.float64))
        jv = jv.reshape(s, c).to(torch.float64)
        roots = loss_hessian_sqrt(losses, outputs, s, c, torch.float64)
        value = float(torch.einsum("sij,sj->si", roots, jv).square().sum() / s)
        if bypass:
            params = list(params)
            fixed = fixed_output_gradients(losses, outputs, params, create_graph=True)
            live = [i for i, g in enumerate(fixed) if g is not None and g.requires_grad]
            pieces = split_flat(delta.to(torch.float64), params)
            hv = torch.autograd.grad([fixed[i] for i in live], [params[i] for i in live],
                                     grad_outputs=[pieces[i].to(fixed[i].dtype) for i in live],
                                     retain_graph=True, allow_unused=True) if live else []
            value += float(sum((pieces[i].to(torch.float64) * h.to(torch.float64)).sum()
                               for i, h in zip(live, hv, strict=True) if h is not None))
        return value

    def check_closure(self, losses: torch.Tensor, outputs: torch.Tensor | None,
                      params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
        """Refuse a GGN whose losses depend on the parameters other than through ``outputs``.

        The GGN models the loss as a function of the outputs only; a term added to the
        per-sample losses directly (an L2 penalty, say) would be silently missing from the
        curvature. Compares the mean-loss gradient ``grads`` (flat, per parameter) with the one
        through the outputs, ``Jᵀ ∂L/∂outputs`` (one extra backward).
        """
        (d_out,) = torch.autograd.grad(losses.mean(), outputs, retain_graph=True,
                                       allow_unused=True)
        if d_out is None:
            raise ClosureError(OUTPUTS_NOT_USED)
        via = torch.autograd.grad(outputs, list(params), grad_outputs=d_out, retain_graph=True,
                                  allow_unused=True)
        worst, where = 0.0, -1
        for i, (g, v) in enumerate(zip(grads, via, strict=True)):
            v = torch.zeros_like(g) if v is None else v.reshape(-1).to(g.dtype)
            # relative to the gradient's size, with an absolute floor for a zero gradient (1e-6:
            # well above float32 round-off of a mean over the batch, far below a penalty's share)
            err = float((g - v).abs().max()) / max(float(g.abs().max()), 1e-6)
            if err > worst:
                worst, where = err, i
        if worst > 1e-4:
            raise ClosureError(
                f"curvature={self.name!r}: the losses depend on parameter {where} (in the "
                f"optimizer's order) other than through the returned outputs (gradients differ "
                f"by {worst:.2g} relative): the GGN would miss that term's curvature. Put such "
                "terms (e.g. an L2 penalty) in the outputs' loss, use curvature='hessian' or "
                "'fisher', or return the outputs the whole loss is computed from")
