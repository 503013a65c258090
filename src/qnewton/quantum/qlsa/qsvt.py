"""QSVT matrix inversion: the degree of the inversion polynomial, ``Q = κ'·ln(κ'/ε)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnewton.quantum.qlsa.model import QLSAModel


@dataclass(frozen=True)
class QSVT(QLSAModel):
    """``Q = κ'·ln(κ'/ε)`` with ``κ' = α·κ`` and constant 1.

    Gilyén, Su, Low, Wiebe (arXiv 1806.01838) and Martyn, Rossi, Tan, Chuang (arXiv 2105.02859):
    an ε-approximation of 1/x on [1/κ', 1] needs a polynomial of degree O(κ'·log(κ'/ε)), one
    query per degree. Constant 1 is a documented, optimistic choice; amplifying the success
    probability (another factor up to κ', or variable-time amplification) is not included, so this
    is a lower-bound-style count for a QSVT solver. Output: queries (dimensionless).
    """

    name: str = "qsvt"
    source: str = "Gilyén et al. arXiv 1806.01838; Martyn et al. arXiv 2105.02859"
    description: str = (
        "QSVT inversion polynomial degree Q = ακ·ln(ακ/ε), constant 1; amplification "
        "of the success probability not included."
    )

    def formula(self, kappa: float, eps: float, alpha: float) -> float:
        effective_kappa = alpha * kappa
        return effective_kappa * math.log(effective_kappa / eps)


QSVT_MODEL = QSVT()


def qsvt_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Query count of :class:`QSVT` (validates κ ≥ 1, 0 < ε < 1, α > 0)."""
    return QSVT_MODEL.queries(kappa, eps, alpha)
