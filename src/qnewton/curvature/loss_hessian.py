"""Per-sample loss Hessians with respect to the outputs, as PSD square roots (the GGN's ``R_s``)."""

from __future__ import annotations

import torch

from qnewton.curvature.autograd import BatchedVJP
from qnewton.curvature.errors import OUTPUTS_NOT_USED, ClosureError


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
        raise ClosureError(OUTPUTS_NOT_USED)
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
