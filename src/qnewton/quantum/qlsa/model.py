"""The QLSA model base class: a named query-count formula with its source (docs/method.md §4.3).

A *query* is one call to the block encoding of ``A/α`` (or its inverse or controlled version).
Every model is a function of three numbers only: the condition number κ of A, the target ℓ₂ error
ε of the output state ``|x⟩ ∝ A⁻¹|b⟩``, and the block-encoding normalization α (docs/method.md
§4.1). :meth:`QLSAModel.queries` validates them once, here, and hands plain floats to the model's
:meth:`~QLSAModel.formula`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from qnewton.validation import check_open_unit, check_positive, check_real


def check_qlsa_args(kappa: Any, eps: Any, alpha: Any) -> tuple[float, float, float]:
    """κ ≥ 1 (finite), 0 < ε < 1 and α > 0 (finite), as floats; ValueError naming the argument."""
    return (
        check_real("kappa", kappa, low=1.0),
        check_open_unit("eps", eps),
        check_positive("alpha", alpha),
    )


@dataclass(frozen=True)
class QLSAModel(ABC):
    """A named query-count model of a quantum linear-system algorithm.

    Attributes:
        name: registry key, e.g. ``"jennings"``.
        source: paper(s) and arXiv id(s) the formula comes from.
        description: the formula in words, its constants and its domain.

    Subclasses implement :meth:`formula`; callers use :meth:`queries`.
    """

    name: str
    source: str
    description: str

    def queries(self, kappa: float, eps: float, alpha: float = 1.0) -> float:
        """Block-encoding queries (dimensionless) to prepare ``|x⟩ ∝ A⁻¹|b⟩`` to ℓ₂ error ε.

        Inputs: ``kappa`` condition number of A (≥ 1), ``eps`` target error (0 < ε < 1),
        ``alpha`` block-encoding normalization in units of ‖A‖₂ (> 0). Raises ValueError naming
        the first invalid argument.
        """
        k, e, a = check_qlsa_args(kappa, eps, alpha)
        return self.formula(k, e, a)

    @abstractmethod
    def formula(self, kappa: float, eps: float, alpha: float) -> float:
        """The model's query count on already validated floats (κ ≥ 1, 0 < ε < 1, α > 0)."""
