"""The discrete-adiabatic QLSA with the walk constant *measured* by Costa, An, Babbush, Berry
(arXiv 2312.07690) on random matrices — an empirical, not a proven, count."""

from __future__ import annotations

from dataclasses import dataclass

from qnewton.quantum.qlsa.costa import filtering_queries
from qnewton.quantum.qlsa.model import QLSAModel

#: Walk steps per unit of κ measured by Costa, An, Babbush, Berry (arXiv 2312.07690): the fitted
#: constant α ≈ 1.84 on random matrices; their abstract: "in practice about 1,200 times smaller
#: than the upper bound" 2305 (2305/1.84 = 1253).
COSTA_MEASURED_WALK_CONSTANT = 1.84


@dataclass(frozen=True)
class CostaMeasured(QLSAModel):
    """``Q = κ'·(1.84 + 2·ln(2/ε))`` with ``κ' = α·κ``: the walk constant Costa et al. measured
    on random matrices, then eigenstate filtering. Empirical: no guarantee for a given matrix.
    Output: block-encoding queries (dimensionless)."""

    name: str = "costa-measured"
    source: str = ("Costa, An, Babbush, Berry, arXiv 2312.07690 (measured constant); "
                   "filtering: Lin & Tong, arXiv 1910.14596")
    description: str = ("Discrete adiabatic with the MEASURED walk constant 1.84 (random "
                        "matrices, no guarantee): Q = ακ·(1.84 + 2·ln(2/ε)).")

    def formula(self, kappa: float, eps: float, alpha: float) -> float:
        effective_kappa = alpha * kappa
        return (effective_kappa * COSTA_MEASURED_WALK_CONSTANT
                + filtering_queries(effective_kappa, eps))


COSTA_MEASURED = CostaMeasured()
