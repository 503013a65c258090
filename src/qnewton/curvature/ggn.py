"""Generalized Gauss-Newton blocks ``(1/S)·Σ_s J_sᵀ H_s J_s`` in factor form."""

from __future__ import annotations

import torch

from qnewton.curvature.autograd import BatchedVJP
from qnewton.curvature.bypass import bypass_rows
from qnewton.curvature.kind import BuildInputs, CurvatureKind
from qnewton.curvature.per_sample import factor_rows
from qnewton.curvature.representation import CurvatureBlock, FactorBlock


def psd_sqrt_eigenvalues(evals: torch.Tensor) -> torch.Tensor:
    """√λ of the eigenvalues ``(…, C)`` of symmetric matrices, with every eigenvalue at or below
    ``C·ε·max|λ|`` (round-off, and the negative ones) set to 0 first: the square root would
    turn a round-off eigenvalue of 1e-17 into noise of 3e-9 (the cross-entropy Hessian, of rank
    C − 1, has one such eigenvalue per sample)."""
    c = evals.shape[-1]
    tol = c * torch.finfo(evals.dtype).eps * evals.abs().amax(dim=-1, keepdim=True)
    return torch.where(evals > tol, evals, torch.zeros_like(evals)).sqrt()


def loss_hessian_sqrt(
    losses: torch.Tensor, outputs: torch.Tensor, s: int, c: int, dtype: torch.dtype
) -> torch.Tensor:
    """Symmetric PSD square roots ``R_s`` (shape ``(S, C, C)``) of the per-sample loss Hessians
    with respect to the outputs; negative and round-off eigenvalues are set to 0
    (:func:`psd_sqrt_eigenvalues`)."""
    (d,) = torch.autograd.grad(
        losses.sum(), outputs, create_graph=True, retain_graph=True, allow_unused=True
    )
    if d is None:
        raise ValueError("the losses do not depend on the outputs returned for the GGN")
    if not d.requires_grad:  # loss linear in the outputs
        return torch.zeros((s, c, c), dtype=dtype, device=outputs.device)
    seeds = torch.zeros((c, s, c), dtype=d.dtype, device=d.device)
    idx = torch.arange(c, device=d.device)
    seeds[idx, :, idx] = 1
    (hrows,) = BatchedVJP()(d, [outputs], seeds.reshape(c, *outputs.shape))
    # hrows[j, s, :] = ∂(Σ_s' d[s', j])/∂o_s = H_s[j, :]
    h = hrows.detach().reshape(c, s, c).permute(1, 0, 2).to(dtype)
    h = (h + h.transpose(1, 2)) / 2
    diag = torch.diagonal(h, dim1=1, dim2=2)
    if not bool((h - torch.diag_embed(diag)).any()):  # diagonal (MSE): no eigensolve needed
        return torch.diag_embed(diag.clamp(min=0).sqrt())
    evals, evecs = torch.linalg.eigh(h)
    root = psd_sqrt_eigenvalues(evals)
    return (evecs * root.unsqueeze(1)) @ evecs.transpose(1, 2)


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
                              paths=inputs.paths)
        k = inputs.curvature_samples
        extra, notes, covered = bypass_rows(losses, outputs, todo, k, config.dtype)
        inputs.notes.update(notes)
        inputs.covered.update(covered)
        for b in todo:
            if id(b) in extra:
                factors[id(b)] = torch.cat([factors[id(b)],
                                            extra[id(b)].to(factors[id(b)])])
        return [
            FactorBlock(b.name, self.name, factors[id(b)], scale=1.0 / k) if ok else None
            for b, ok in zip(inputs.blocks, inputs.built, strict=True)
        ]
