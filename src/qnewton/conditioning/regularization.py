"""Regularization schemes: the diagonal shift λ of ``A = H + λI`` (docs/method.md §4.6).

Each scheme is one registry entry ``(block, strength, spectral_norm) -> λ`` in units of H:

* ``"max-entry"`` (the paper's): ``λ = strength · max|H_ij|``; cheap for factor form (the largest
  entry of a PSD matrix is on the diagonal). For PSD ``H``: ``κ ≤ 1 + N/strength``.
* ``"absolute"``: ``λ = strength``.
* ``"spectral"``: ``λ = strength · ‖H‖₂``, so ``κ ≤ 1 + 1/strength`` for PSD ``H``. ``‖H‖₂`` is
  ``spectral_norm`` if given, else an upper bound (20 Lanczos matvecs, seed 0, valid with
  probability ≥ 1 − 1e-6; for an explicit matrix capped by Gershgorin), so λ may exceed
  ``strength·‖H‖₂`` somewhat (≲ 30 % for PSD blocks) while the κ guarantee holds.
* ``"none"``: ``λ = 0``.
"""

from __future__ import annotations

from collections.abc import Callable

from qnewton.curvature.representation import CurvatureBlock
from qnewton.estimation.dense import gershgorin_upper
from qnewton.estimation.krylov import spectral_norm_upper
from qnewton.registry import Registry
from qnewton.validation import check_nonnegative


def _spectral(block: CurvatureBlock, strength: float, spectral_norm: float | None) -> float:
    if spectral_norm is None:
        spectral_norm = spectral_norm_upper(block.matvec, block.n, psd=block.psd,
                                            dtype=block.dtype, device=block.device)
        if not block.matrix_free and block.factor_rows is None:  # explicit entries
            spectral_norm = min(spectral_norm, gershgorin_upper(block.to_dense()))
    return strength * spectral_norm


Scheme = Callable[[CurvatureBlock, float, "float | None"], float]

REG_SCHEMES: Registry[Scheme] = Registry("reg_scheme")
REG_SCHEMES.register("max-entry", lambda block, strength, norm: strength * block.max_abs_entry())
REG_SCHEMES.register("absolute", lambda block, strength, norm: strength)
REG_SCHEMES.register("spectral", _spectral)
REG_SCHEMES.register("none", lambda block, strength, norm: 0.0)


def regularization_lambda(block: CurvatureBlock, scheme: str, strength: float,
                          spectral_norm: float | None = None) -> float:
    """The diagonal shift λ for ``A = H + λI`` under ``scheme`` (see the module docstring).

    Args:
        block: the curvature block ``H`` (any representation).
        scheme: a name in :data:`REG_SCHEMES`.
        strength: dimensionless (for ``"absolute"``: absolute) strength, finite ``≥ 0``.
        spectral_norm: optional known ``‖H‖₂`` (finite, ``≥ 0``), used by ``"spectral"`` only.

    Raises:
        ValueError: unknown ``scheme``; ``strength`` or ``spectral_norm`` negative/non-finite.
    """
    rule = REG_SCHEMES[scheme]
    strength = check_nonnegative("strength", strength)
    if spectral_norm is not None:
        spectral_norm = check_nonnegative("spectral_norm", spectral_norm)
    if strength == 0.0:
        return 0.0
    return rule(block, strength, spectral_norm)
