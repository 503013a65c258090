"""HHL (Harrow, Hassidim, Lloyd, arXiv 0811.3171) in its standard form ``Q = α·κ²/ε``."""

from __future__ import annotations

from dataclasses import dataclass

from qnewton.quantum.qlsa.model import QLSAModel


@dataclass(frozen=True)
class HHL(QLSAModel):
    """``Q = α·κ²/ε``: HHL's Õ(s²κ²/ε) (arXiv 0811.3171, abstract and p. 3) with constant 1.

    Phase estimation to relative precision ε on eigenvalues down to 1/κ needs the evolution
    ``e^{iAt}`` for ``t ≈ κ/ε`` (in units of 1/‖A‖), which costs ``α·t`` block-encoding queries
    (simulation time scales with the block encoding's normalization α, linearly); amplitude
    amplification repeats it ≈ κ times. So α enters once — ``(ακ)²/ε`` would charge it twice.
    HHL gives no explicit constant; 1 is a documented, optimistic choice. Output: queries.
    """

    name: str = "hhl"
    source: str = "Harrow, Hassidim, Lloyd, arXiv 0811.3171"
    description: str = "HHL standard form Q = α·κ²/ε, constant 1 (optimistic leading term)."

    def formula(self, kappa: float, eps: float, alpha: float) -> float:
        return alpha * kappa**2 / eps


HHL_MODEL = HHL()


def hhl_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Query count of :class:`HHL` (validates κ ≥ 1, 0 < ε < 1, α > 0)."""
    return HHL_MODEL.queries(kappa, eps, alpha)
