"""The discrete-adiabatic QLSA with the walk constant *measured* by Costa, An, Babbush, Berry
(arXiv 2312.07690) on random matrices — an empirical, not a proven, count."""

from __future__ import annotations

from dataclasses import dataclass

from qnewton.quantum.qlsa.costa import Costa

#: Walk steps per unit of κ measured by Costa, An, Babbush, Berry (arXiv 2312.07690): the fitted
#: constant α ≈ 1.84 on random matrices; their abstract: "in practice about 1,200 times smaller
#: than the upper bound" 2305 (2305/1.84 = 1253).
COSTA_MEASURED_WALK_CONSTANT = 1.84


@dataclass(frozen=True)
class CostaMeasured(Costa):
    """``Q = κ'·(1.84 + 2·ln(2/ε))`` with ``κ' = α·κ``: :class:`Costa` with the walk constant
    Costa et al. measured on random matrices, then eigenstate filtering. Empirical: no guarantee
    for a given matrix. Output: block-encoding queries (dimensionless)."""

    name: str = "costa-measured"
    source: str = ("Costa, An, Babbush, Berry, arXiv 2312.07690 (measured constant); "
                   "filtering: Lin & Tong, arXiv 1910.14596")
    description: str = ("Discrete adiabatic with the MEASURED walk constant 1.84 (random "
                        "matrices, no guarantee): Q = ακ·(1.84 + 2·ln(2/ε)).")
    walk_constant: float = COSTA_MEASURED_WALK_CONSTANT


COSTA_MEASURED = CostaMeasured()
