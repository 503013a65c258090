"""End-to-end error of a quantum linear solve that hands a Newton step its vector, and the split
of one accuracy target between the QLSA and the readout (docs/method.md §4.4).

The vector the step receives differs from A⁻¹b by the QLSA's error ε_QLSA (the state) plus the
tomography error δ_readout (reading N amplitudes out), both relative ℓ₂ errors, with probability
at least 1 − ε_logical that no logical fault (memory, Clifford, magic state) spoiled a run; the
budget is additive, ε_QLSA + δ_readout + ε_logical, the union-bound reading of Beverland et al.
(arXiv 2211.07629), who split one error budget additively among its sources.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from qnewton.quantum.qlsa import qlsa_queries
from qnewton.quantum.readout import readout_runs
from qnewton.validation import check_open_unit

#: Candidate shares of the accuracy target given to the QLSA (the rest goes to the readout).
#: Queries grow like log(1/ε_QLSA) but tomography runs like 1/δ², so the best share is small;
#: the split is the cheapest of these (queries × runs), 8 model evaluations per decision.
QLSA_SHARES = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.001)


@dataclass(frozen=True)
class ErrorBudget:
    """Error terms of one quantum solve, dimensionless.

    Attributes:
        eps_qlsa: relative ℓ₂ error of the QLSA's state.
        delta_readout: relative ℓ₂ error of the tomography (0 for ``"state"`` readout: the
            step would still need the vector, which the paper's hypothesis gets for free).
        eps_logical: probability budget for any logical fault in a run (the profile's
            ``error_budget``; 0 for a gate-count profile, which models no errors).
        total: ``eps_qlsa + delta_readout + eps_logical``.
    """

    eps_qlsa: float
    delta_readout: float
    eps_logical: float

    @property
    def total(self) -> float:
        return self.eps_qlsa + self.delta_readout + self.eps_logical

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "total": self.total}


def matched_split(target: float, n: int, qlsa: str, kappa: float, alpha: float
                  ) -> tuple[float, float]:
    """``(ε_QLSA, δ_readout)`` with ``ε_QLSA + δ_readout = target``, the cheapest of
    :data:`QLSA_SHARES` by queries × vector-readout runs, so that the vector a step receives has
    relative error at most ``target`` (before logical faults), like a classical solve to that
    accuracy."""
    target = check_open_unit("target", target)

    def cost(share: float) -> float:
        eps = share * target
        return qlsa_queries(qlsa, kappa, eps, alpha) * readout_runs(n, "vector", target - eps)

    share = min(QLSA_SHARES, key=cost)
    return share * target, (1.0 - share) * target
