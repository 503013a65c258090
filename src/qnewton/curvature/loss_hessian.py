"""Per-sample loss Hessians with respect to the outputs, as PSD square roots (the GGN's ``R_s``)."""

from __future__ import annotations

import torch

from qnewton.curvature.autograd import BatchedVJP


def loss_hessian_sqrt(
    losses: torch.Tensor, outputs: torch.Tensor, s: int, c: int, dtype: torch.dtype
) -> torch.Tensor:
    """Symmetric PSD square roots ``R_s`` (shape ``(S, C, C)``) of the per-sample loss Hessians
    with respect to the outputs; negative eigenvalues are clamped to 0."""
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
    evals, evecs = torch.linalg.eigh(h)
    root = evals.clamp(min=0).sqrt()
    return (evecs * root.unsqueeze(1)) @ evecs.transpose(1, 2)
