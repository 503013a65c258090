"""Logical counts of one QLSA run, in the form another estimator reads (docs/method.md §4.4).

A run is ``queries`` calls to the block encoding; each costs :func:`~qnewton.quantum.
fault_tolerant.toffolis_per_query` Toffolis (as CCZ gates, 4 T states each) and one arbitrary-
angle Z rotation: the signal-processing phase between two calls (QSP/QSVT phases, the walk
angles of the adiabatic and filtering stages). The rotations are synthesized from T gates; with
the mixed-fallback synthesis of Kliuchnikov, Bocharov, Roetteler, Yard (arXiv 2203.10064) as the
Azure Resource Estimator uses it (Beverland et al., arXiv 2211.07629), one rotation to accuracy
ε_rot costs ``⌈0.53·log₂(R/ε_rot) + 5.3⌉`` T gates when R rotations share the budget ε_rot.
|b⟩ is prepared by QROAM and arithmetic (Toffolis already counted), not by rotations.

:func:`qdk_logical_counts` writes these counts under the key names of the ``qdk`` estimator's
``LogicalCounts`` (``numQubits``, ``tCount``, ``rotationCount``, ``rotationDepth``, ``cczCount``,
``ccixCount``, ``measurementCount``), so a file exported by ``qnewton estimate --export`` is
re-estimated by ``qdk.estimator.LogicalCounts(json.load(f)).estimate(...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qnewton.quantum.fault_tolerant import (
    T_STATES_PER_TOFFOLI,
    algorithmic_qubits,
    toffolis_per_query,
)
from qnewton.quantum.profiles import HardwareProfile
from qnewton.validation import check_int, check_open_unit, check_positive

#: Arbitrary-angle rotations per block-encoding query: the one phase between two calls.
ROTATIONS_PER_QUERY = 1
#: Rotation synthesis, T gates per rotation = ⌈A·log₂(R/ε_rot) + B⌉ (Kliuchnikov et al., arXiv
#: 2203.10064, as used by Beverland et al., arXiv 2211.07629; the qdk estimator reports the same
#: ``numTsPerRotation``, e.g. 17 for R = 1000, ε_rot = 1e-3/3).
SYNTHESIS_SLOPE = 0.53
SYNTHESIS_OFFSET = 5.3
#: Share of the run's error budget the rotations get when they are present: the estimator's
#: default split, one third each to logical errors, T states and rotations (arXiv 2211.07629).
ROTATION_BUDGET_SHARE = 1.0 / 3.0


def t_per_rotation(rotation_count: int, rotation_budget: float) -> int:
    """T gates to synthesize one of ``rotation_count`` rotations that share ``rotation_budget``
    (0 when there are none)."""
    r = check_int("rotation_count", rotation_count, minimum=0)
    if r == 0:
        return 0
    budget = check_open_unit("rotation_budget", rotation_budget)
    return math.ceil(SYNTHESIS_SLOPE * math.log2(r / budget) + SYNTHESIS_OFFSET)


@dataclass(frozen=True)
class QLSALogicalCounts:
    """Logical counts of one QLSA run (dimensionless counts).

    Attributes:
        num_qubits: algorithmic logical qubits, before any layout.
        ccz_count: CCZ (Toffoli) gates, ⌈Toffolis per query · queries⌉.
        rotation_count, rotation_depth: arbitrary-angle rotations (all sequential).
        t_per_rotation: T gates per synthesized rotation (:func:`t_per_rotation`).
        t_count: T gates in all: 4 per CCZ (Jones, arXiv 1212.5069) plus the rotations'.
        queries: block-encoding queries of the run.
    """

    num_qubits: int
    ccz_count: int
    rotation_count: int
    rotation_depth: int
    t_per_rotation: int
    t_count: int
    queries: float

    def qdk_logical_counts(self) -> dict[str, int]:
        """The counts under the ``qdk`` estimator's ``LogicalCounts`` key names (T gates of
        the CCZs and rotations are not repeated in ``tCount``: the estimator derives them)."""
        return {"numQubits": self.num_qubits, "tCount": 0, "rotationCount": self.rotation_count,
                "rotationDepth": self.rotation_depth, "cczCount": self.ccz_count,
                "ccixCount": 0, "measurementCount": 0}

    def to_dict(self) -> dict[str, Any]:
        return {"num_qubits": self.num_qubits, "ccz_count": self.ccz_count,
                "rotation_count": self.rotation_count, "rotation_depth": self.rotation_depth,
                "t_per_rotation": self.t_per_rotation, "t_count": self.t_count,
                "queries": self.queries}


def qlsa_logical_counts(n: int, d: int, queries: float, profile: HardwareProfile,
                        toffolis: float | None = None, qubits: int | None = None
                        ) -> QLSALogicalCounts:
    """Logical counts of one run of ``queries`` queries on an N×N system of row sparsity d on
    ``profile`` (its ``bits_per_entry`` and ``error_budget``). ``toffolis`` per query defaults
    to the sparse-access QROAM count and ``qubits`` to its algorithmic qubits; a structured
    block encoding passes its own."""
    q = check_positive("queries", queries)
    per_query = toffolis_per_query(n, d, profile) if toffolis is None else toffolis
    ccz = math.ceil(per_query * q)
    rotations = math.ceil(ROTATIONS_PER_QUERY * q)
    t_rot = t_per_rotation(rotations, ROTATION_BUDGET_SHARE * profile.error_budget)
    return QLSALogicalCounts(
        num_qubits=algorithmic_qubits(n, d, profile) if qubits is None else qubits,
        ccz_count=ccz,
        rotation_count=rotations, rotation_depth=rotations, t_per_rotation=t_rot,
        t_count=T_STATES_PER_TOFFOLI * ccz + t_rot * rotations, queries=q)
