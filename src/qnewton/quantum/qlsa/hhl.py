"""HHL-type scaling (Harrow, Hassidim, Lloyd, arXiv 0811.3171): ``Q = (α·κ)²/ε``."""

from __future__ import annotations

from dataclasses import dataclass

from qnewton.quantum.qlsa.model import QLSAModel


@dataclass(frozen=True)
class HHL(QLSAModel):
    """``Q = (α·κ)²/ε``: the leading term of HHL with its constant set to 1.

    Phase estimation to relative precision ε on eigenvalues down to 1/κ' costs O(κ'/ε)
    Hamiltonian simulation time, repeated O(κ') times by amplitude amplification (κ' = α·κ). HHL
    gives no explicit constant; 1 is a documented, optimistic choice. Output: queries.
    """

    name: str = "hhl"
    source: str = "Harrow, Hassidim, Lloyd, arXiv 0811.3171"
    description: str = "HHL-type Q = (ακ)²/ε, constant 1 (optimistic leading term)."

    def formula(self, kappa: float, eps: float, alpha: float) -> float:
        return (alpha * kappa) ** 2 / eps


HHL_MODEL = HHL()


def hhl_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Query count of :class:`HHL` (validates κ ≥ 1, 0 < ε < 1, α > 0)."""
    return HHL_MODEL.queries(kappa, eps, alpha)
