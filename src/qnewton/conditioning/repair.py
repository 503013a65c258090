"""Positive-definiteness repair: the smallest diagonal shift making a symmetric matrix PD."""

from __future__ import annotations

import math

import torch

from qnewton.conditioning.pruning import symmetrized
from qnewton.estimation.dense import check_square_matrix


def is_pd_above(a: torch.Tensor, min_eig: float) -> bool:
    """Cheap test ``λ_min(a) > min_eig`` (numerically) via ``cholesky_ex`` of ``a − min_eig·I``."""
    shifted = a.clone()
    shifted.diagonal().sub_(min_eig)
    return int(torch.linalg.cholesky_ex(shifted).info) == 0


def repair_positive_definite(a: torch.Tensor, min_eig: float) -> tuple[torch.Tensor, float]:
    """Smallest diagonal shift making a symmetric matrix positive definite: ``A + s·I``.

    Method: if ``cholesky_ex(A − min_eig·I)`` succeeds, ``λ_min(A) ≥ min_eig`` already and
    ``s = 0``. Otherwise ``s = min_eig − λ_min(A)`` from ``eigvalsh`` (the exact minimal shift),
    plus a rounding margin ``δ = 8·N·eps·max|A|`` (doubled until the Cholesky test of
    ``A + sI − min_eig·I`` passes), so ``s`` exceeds the minimal shift only by rounding-level
    amounts while ``λ_min(A + sI) ≥ min_eig`` holds as computed.

    Args:
        a: symmetric ``(N, N)`` matrix (symmetric up to rounding; symmetrized first).
        min_eig: target smallest eigenvalue, finite and ``> 0``.

    Returns:
        ``(A + s·I, s)``: a new tensor and the shift ``s ≥ 0`` (float, units of ``A``).

    Raises:
        ValueError: ``a`` not a finite symmetric square matrix; ``min_eig`` not finite ``> 0``.
    """
    a = symmetrized(check_square_matrix(a))
    if isinstance(min_eig, bool) or not isinstance(min_eig, int | float):
        raise ValueError(f"min_eig must be a finite number > 0, got {min_eig!r}")
    min_eig = float(min_eig)
    if not math.isfinite(min_eig) or min_eig <= 0.0:
        raise ValueError(f"min_eig must be finite and > 0, got {min_eig!r}")
    if is_pd_above(a, min_eig):
        return a, 0.0
    n = a.shape[0]
    lam_min = float(torch.linalg.eigvalsh(a)[0])
    margin = 8.0 * n * torch.finfo(a.dtype).eps * max(float(a.abs().max()), min_eig)
    shift = max(0.0, min_eig - lam_min)
    for _ in range(60):
        candidate = shift + margin
        out = a.clone()
        out.diagonal().add_(candidate)
        if is_pd_above(out, min_eig):
            return out, candidate
        margin *= 2.0
    raise RuntimeError("repair_positive_definite: could not reach the target (non-finite input?)")


