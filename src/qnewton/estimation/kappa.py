"""A condition-number figure and what it guarantees (docs/method.md §4.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

KAPPA_KINDS = ("exact", "upper", "lower", "estimate")


@dataclass(frozen=True)
class KappaEstimate:
    """A condition-number figure and what it guarantees.

    Attributes:
        value: κ (dimensionless, ≥ 1); ``inf`` when the bound overflows float64.
        log10: log₁₀ κ, finite even where ``value`` overflows (norm–determinant bounds).
        kind: one of :data:`KAPPA_KINDS`.
        method: the estimator's name (e.g. ``"eigvalsh"``, ``"lanczos"``, ``"regularization"``).
        seconds: measured wall-clock seconds the estimate took.
    """

    value: float
    log10: float
    kind: str
    method: str
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KAPPA_KINDS:
            raise ValueError(f"kind must be one of {KAPPA_KINDS}, got {self.kind!r}")



# Conventions
#
# κ of a symmetric positive-definite (SPD) matrix is κ = λ_max / λ_min. The library only ever
# solves SPD systems (conditioning repairs positive definiteness), so for a symmetric matrix that
# is *not* positive definite we use the convention κ = +inf ("no finite SPD condition number":
# never route it to a quantum solver). With this convention every ``kind`` below is honest:
# a "lower" bound of +inf is only returned when λ_min ≤ 0 is certain.
# The norm–determinant bounds (GEJ, Merikoski) bound κ₂ = σ_max/σ_min of any square matrix,
# which equals λ_max/λ_min for SPD matrices.


_LN10 = math.log(10.0)


def kappa_from_log(log_kappa: float, kind: str, method: str, seconds: float) -> KappaEstimate:
    """Build a :class:`KappaEstimate` from a natural-log κ (may be ``inf``); κ ≥ 1 always."""
    log_kappa = max(0.0, log_kappa)
    log10 = log_kappa / _LN10
    value = math.exp(log_kappa) if log_kappa < 709.0 else math.inf
    return KappaEstimate(value=value, log10=log10, kind=kind, method=method, seconds=seconds)


def kappa_from_extremes(lo: float, hi: float, kind: str, method: str,
                        seconds: float) -> KappaEstimate:
    """κ = hi/lo from extreme eigenvalue figures; ``inf`` when ``lo ≤ 0`` (not PD)."""
    log_kappa = math.log(hi) - math.log(lo) if lo > 0.0 else math.inf
    return kappa_from_log(log_kappa, kind, method, seconds)
