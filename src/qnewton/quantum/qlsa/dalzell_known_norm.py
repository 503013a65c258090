"""Dalzell's solver when ‖x‖ is known exactly (arXiv 2406.12086): one kernel reflection,
``Q = κ'·ln(2√2/ε)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnewton.quantum.qlsa.model import QLSAModel


@dataclass(frozen=True)
class DalzellKnownNorm(QLSAModel):
    """``Q = α·κ·ln(2√2/ε)``: Dalzell (arXiv 2406.12086, abstract) — with ‖x‖ known exactly a
    single kernel reflection gives query complexity ``(1 + O(ε))·κ·ln(2√2/ε)``; the ``O(ε)``
    factor is dropped. A Newton step does not know ‖x‖ in advance (estimating it is what the
    56κ of :class:`~qnewton.quantum.qlsa.dalzell.Dalzell` pays for), so this is a lower-bound
    style count. Output: block-encoding queries (dimensionless)."""

    name: str = "dalzell-known-norm"
    source: str = "Dalzell, arXiv 2406.12086 (known ‖x‖)"
    description: str = "Q = ακ·ln(2√2/ε) when ‖x‖ is known exactly (one kernel reflection)."

    def formula(self, kappa: float, eps: float, alpha: float) -> float:
        return alpha * kappa * math.log(2.0 * math.sqrt(2.0) / eps)


DALZELL_KNOWN_NORM = DalzellKnownNorm()
