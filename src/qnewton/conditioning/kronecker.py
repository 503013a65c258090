"""Conditioning a Kronecker block with the π-split damping, keeping its structure.

K-FAC does not solve ``G ⊗ A + λI`` (no cheaper than a dense solve of that size) but
``(G + γ_G I) ⊗ (A + γ_A I)`` with ``γ_A = π√λ``, ``γ_G = √λ/π`` and
``π = √((tr A / d_a) / (tr G / d_out))`` (Martens & Grosse 2015 §6.3, the trace-norm π). Expanded,
that matrix is ``G ⊗ A + λI + π√λ·(G ⊗ I) + (√λ/π)·(I ⊗ A)``: it is *not* ``H + λI``, it adds
more damping along the factors' large directions. Its eigenvalues are ``(μ_G + γ_G)(μ_A + γ_A) ≥
γ_G·γ_A = λ``, so ``λ_min ≥ λ`` exactly as for ``H + λI``.

The system handed to the scheduler is therefore the damped Kronecker block itself (shift 0, plus
a repair shift in the rare case the positive-definiteness target exceeds λ): every solver, the κ
analysis and the QLSA's model see the same matrix that is solved, and the record's ``reg`` is λ
with ``shift`` the repair shift only (docs/method.md §4.7, "Kronecker-factored blocks").
"""

from __future__ import annotations

import math

from qnewton.conditioning.regularization import regularization_lambda
from qnewton.curvature.kronecker import KroneckerBlock
from qnewton.system import LinearSystem


def pi_split(block: KroneckerBlock, lam: float) -> tuple[float, float]:
    """``(γ_A, γ_G) = (π√λ, √λ/π)`` with the trace-norm π (module docstring); π = 1 when a
    factor's trace is 0 or not finite (then nothing tells the two factors' scales apart)."""
    if lam <= 0.0:
        return 0.0, 0.0
    mean_a = float(block.a.diagonal().sum()) / block.d_a
    mean_g = float(block.g.diagonal().sum()) / block.d_out
    ratio = mean_a / mean_g if mean_g > 0.0 else math.nan
    pi = math.sqrt(ratio) if math.isfinite(ratio) and ratio > 0.0 else 1.0
    root = math.sqrt(lam)
    return pi * root, root / pi


def condition_kronecker(block: KroneckerBlock, reg_scheme: str, reg: float,
                        min_eig_fraction: float) -> LinearSystem:
    """The π-split damped system of a Kronecker block (module docstring); λ from
    ``reg_scheme``/``reg`` as for every block (``spectral`` uses the exact ‖H‖₂ =
    λ_max(A)·λ_max(G)), the repair shift ``max(0, t − λ)`` with ``t = min_eig_fraction ·
    max|A_ij|`` of the damped matrix."""
    norm = block.eigenvalue_range()[1] if reg_scheme == "spectral" else None
    lam = regularization_lambda(block, reg_scheme, reg, spectral_norm=norm)
    damped = block.damped(*pi_split(block, lam))
    scale = damped.max_abs_entry()
    target = min_eig_fraction * scale if scale > 0.0 else min_eig_fraction
    repair = max(0.0, target - lam)
    n = block.n
    return LinearSystem(block=damped, shift=repair, reg=lam, repair_shift=repair, dense=None,
                        d=n, nnz=n * n, min_eig_bound=lam + repair)
