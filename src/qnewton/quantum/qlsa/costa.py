"""Discrete-adiabatic QLSA of Costa, An, Sanders, Su, Babbush, Berry (arXiv 2111.08152), followed
by eigenstate filtering (Lin & Tong, arXiv 1910.14596)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnewton.quantum.qlsa.model import QLSAModel

#: Walk steps per unit of κ of the adiabatic stage: the explicit upper-bound constant of Costa et
#: al. (arXiv 2111.08152), restated as "α = 2305" by Costa, An, Babbush, Berry (arXiv 2312.07690),
#: who measure ≈1.84 in practice on random matrices (we keep the proven bound).
COSTA_WALK_CONSTANT = 2305.0


@dataclass(frozen=True)
class Costa(QLSAModel):
    """``Q = κ'·(2305 + 2·ln(2/ε))`` with ``κ' = α·κ``.

    ``2305·κ'`` walk steps for the adiabatic stage (reaching a constant overlap with the solution)
    followed by eigenstate filtering of degree ≈ ``2·κ'·ln(2/ε)`` (Lin & Tong, arXiv 1910.14596)
    that boosts the accuracy to ε. Optimal O(κ·log(1/ε)) scaling with a large constant. Output:
    block-encoding queries (dimensionless).
    """

    name: str = "costa"
    source: str = "Costa et al., arXiv 2111.08152; filtering: Lin & Tong, arXiv 1910.14596"
    description: str = "Discrete adiabatic: Q = ακ·(2305 + 2·ln(2/ε))."

    def formula(self, kappa: float, eps: float, alpha: float) -> float:
        effective_kappa = alpha * kappa
        return effective_kappa * (COSTA_WALK_CONSTANT + 2.0 * math.log(2.0 / eps))


COSTA = Costa()


def costa_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Query count of :class:`Costa` (validates κ ≥ 1, 0 < ε < 1, α > 0)."""
    return COSTA.queries(kappa, eps, alpha)
