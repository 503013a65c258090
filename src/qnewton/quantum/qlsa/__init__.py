"""QLSA query-count models (docs/method.md §4.3) and their registry.

:data:`QLSA_MODELS` maps a model's name to its :class:`QLSAModel`; :func:`qlsa_queries` looks a
model up by name. Adding a model is one new module in this package (a frozen subclass of
:class:`QLSAModel` with its formula and sources) plus one entry in the tuple below.
"""

from __future__ import annotations

from qnewton.quantum.qlsa.costa import COSTA, Costa, costa_queries
from qnewton.quantum.qlsa.costa_measured import COSTA_MEASURED, CostaMeasured
from qnewton.quantum.qlsa.dalzell import DALZELL, Dalzell, dalzell_queries
from qnewton.quantum.qlsa.dalzell_known_norm import DALZELL_KNOWN_NORM, DalzellKnownNorm
from qnewton.quantum.qlsa.hhl import HHL, HHL_MODEL, hhl_queries
from qnewton.quantum.qlsa.jennings import (
    JENNINGS,
    JENNINGS_RELEASE,
    Jennings,
    JenningsRelease,
    jennings_queries,
    jennings_release_queries,
)
from qnewton.quantum.qlsa.model import QLSAModel, check_qlsa_args
from qnewton.quantum.qlsa.qsvt import QSVT, QSVT_MODEL, qsvt_queries
from qnewton.registry import Registry

__all__ = [
    "HHL",
    "QLSA_MODELS",
    "QSVT",
    "Costa",
    "CostaMeasured",
    "Dalzell",
    "DalzellKnownNorm",
    "Jennings",
    "JenningsRelease",
    "QLSAModel",
    "check_qlsa_args",
    "costa_queries",
    "dalzell_queries",
    "hhl_queries",
    "jennings_queries",
    "jennings_release_queries",
    "qlsa_queries",
    "qsvt_queries",
]

#: The QLSA models by name, in the order the CLI lists them; unknown names raise
#: :class:`~qnewton.registry.UnknownNameError` listing the registered ones.
QLSA_MODELS: Registry[QLSAModel] = Registry("qlsa")
for _model in (JENNINGS, JENNINGS_RELEASE, DALZELL, DALZELL_KNOWN_NORM, COSTA, COSTA_MEASURED,
               HHL_MODEL, QSVT_MODEL):
    QLSA_MODELS.register(_model.name, _model)
del _model


def qlsa_queries(name: str, kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Query count of the QLSA model ``name`` (a key of :data:`QLSA_MODELS`).

    Raises :class:`~qnewton.registry.UnknownNameError` (a ValueError) for an unknown name, listing
    the registered names, and ValueError for invalid κ, ε, α.
    """
    return float(QLSA_MODELS[name].queries(kappa, eps, alpha))
