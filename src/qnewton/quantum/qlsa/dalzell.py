"""Dalzell's explicit QLSA bound (arXiv 2406.12086, "A shortcut to an optimal quantum linear system
solver"): ``Q ≈ α·κ·(56 + 1.05·ln(1/ε))``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnewton.quantum.qlsa.model import QLSAModel

#: κ-proportional constant of the bound ``56κ + 1.05κ·ln(1/ε) + o(κ)`` (arXiv 2406.12086, abstract).
DALZELL_CONSTANT = 56.0
#: Coefficient of ``κ·ln(1/ε)`` in the same bound.
DALZELL_LOG_COEFFICIENT = 1.05


@dataclass(frozen=True)
class Dalzell(QLSAModel):
    """``Q = α·κ·(56 + 1.05·ln(1/ε))``: Dalzell's bound at the effective condition number α·κ.

    The o(κ) term of the paper is dropped. Output: block-encoding queries (dimensionless).
    """

    name: str = "dalzell"
    source: str = "Dalzell, arXiv 2406.12086"
    description: str = "Q = α·κ·(56 + 1.05·ln(1/ε)), best explicit bound."

    def formula(self, kappa: float, eps: float, alpha: float) -> float:
        return alpha * kappa * (DALZELL_CONSTANT + DALZELL_LOG_COEFFICIENT * math.log(1.0 / eps))


DALZELL = Dalzell()


def dalzell_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Query count of :class:`Dalzell` (validates κ ≥ 1, 0 < ε < 1, α > 0)."""
    return DALZELL.queries(kappa, eps, alpha)
