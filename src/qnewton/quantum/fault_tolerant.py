"""Surface-code resources of one QLSA run on a fault-tolerant profile (docs/method.md §4.4).

The logical error model, the logical cycle time and the lattice-surgery layout are those of the
Azure Resource Estimator's gate-based surface code (Beverland et al., "Assessing requirements to
scale to practical quantum advantage", arXiv 2211.07629). Data access is a QROAM (Low,
Kliuchnikov, Schaeffer, arXiv 1812.00954; Berry et al., arXiv 1902.02134). Every time here is a
**modeled** number of seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnewton.quantum.profiles import (
    SURFACE_CODE_THRESHOLD,
    HardwareProfile,
    check_physical_error_rate,
    index_bits,
)
from qnewton.validation import check_int, check_open_unit, check_positive

#: Prefactor A of the logical error rate A·(p/p_th)^((d+1)/2) per logical qubit per logical cycle
#: (``crossingPrefactor`` = 0.03 of the Azure Resource Estimator's surface code, arXiv 2211.07629;
#: fitted as in Fowler et al., arXiv 1208.0928, Eq. 11).
SURFACE_CODE_PREFACTOR = 0.03
#: Logical cycles per Toffoli: a CCZ is executed as three multi-qubit Pauli measurements of one
#: logical cycle each (the Azure Resource Estimator's PSSPC schedule, arXiv 2211.07629).
LOGICAL_CYCLES_PER_TOFFOLI = 3
#: Extra logical qubits of the QLSA itself (block-encoding flag/ancilla qubits, adiabatic or
#: filtering control qubits, Toffoli workspace). A round, documented number; no source gives one.
QLSA_ANCILLA_QUBITS = 10
#: Largest code distance searched; a budget that needs more is reported as infeasible.
MAX_CODE_DISTANCE = 2001


def logical_error_rate(physical_error_rate: float, distance: int) -> float:
    """Logical error per logical qubit per logical cycle: ``0.03·(p/0.01)^((d+1)/2)``."""
    ratio = physical_error_rate / SURFACE_CODE_THRESHOLD
    return SURFACE_CODE_PREFACTOR * ratio ** ((distance + 1) / 2)


def layout_qubits(algorithmic_qubits: int) -> int:
    """Logical qubits after the lattice-surgery layout: ``2·Q + ⌈√(8·Q)⌉ + 1``.

    Q algorithmic qubits laid out for nearest-neighbour lattice surgery (arXiv 2211.07629).
    """
    return 2 * algorithmic_qubits + math.ceil(math.sqrt(8 * algorithmic_qubits)) + 1


def logical_cycle_seconds(profile: HardwareProfile, distance: int) -> float:
    """Seconds of one logical cycle: ``(4·t_2q + 2·t_meas)·d``.

    The Azure Resource Estimator's ``logicalCycleTime`` of the gate-based surface code: d rounds
    of syndrome extraction, each four two-qubit gate layers and two measurement layers.
    """
    return (4.0 * profile.t_2q_s + 2.0 * profile.t_meas_s) * distance


def toffolis_per_query(n: int, d: int, profile: HardwareProfile) -> float:
    """Toffoli gates per QLSA query on explicit classical data.

    ``T = 2√(N·d·w) + 2√(N·d) + 2·(2√(N·w_b) + 2√N)``: a QROAM read of the N·d stored entries of A
    with w = bits_per_entry + ⌈log₂N⌉ bits each (arXiv 1812.00954, 1902.02134), compute +
    uncompute, plus two preparations of |b⟩ with w_b = bits_per_entry bits per amplitude.
    Output: Toffolis (dimensionless).
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1)
    w = profile.entry_bits(n)
    wb = profile.bits_per_entry
    matrix = 2.0 * math.sqrt(n * d * w) + 2.0 * math.sqrt(n * d)
    vector = 2.0 * (2.0 * math.sqrt(n * wb) + 2.0 * math.sqrt(n))
    return matrix + vector


def logical_qubits(n: int, d: int, profile: HardwareProfile) -> int:
    """Logical qubits of one QLSA run, including the surface-code layout overhead.

    Algorithmic qubits ``Q_alg = ⌈√(N·d·w)⌉ + 2⌈log₂N⌉ + w + 10``: the QROAM's ≈√(N·d·w) work
    qubits at its Toffoli-optimal block size, row and column index registers, the data register,
    and :data:`QLSA_ANCILLA_QUBITS` further ancillas; then :func:`layout_qubits`.
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1)
    w = profile.entry_bits(n)
    q_alg = math.ceil(math.sqrt(n * d * w)) + 2 * index_bits(n) + w + QLSA_ANCILLA_QUBITS
    return layout_qubits(q_alg)


def code_distance(
    physical_error_rate: float, n_logical_qubits: int, logical_cycles: float, error_budget: float
) -> int:
    """Smallest odd surface-code distance d ≥ 3 meeting the error budget.

    ``logical_error_rate(p, d) · (#logical qubits) · (#logical cycles) ≤ error_budget``; the same
    rule as the Azure Resource Estimator's "smallest odd d ≥ 2·log(A/P)/log(p_th/p) − 1" with
    ``P = budget/(qubits·cycles)``. The whole budget goes to logical (memory/gate) errors;
    magic-state factories are assumed to keep pace and are not counted. Raises ValueError if no
    d ≤ :data:`MAX_CODE_DISTANCE` suffices.
    """
    p = check_physical_error_rate(physical_error_rate)
    q = check_int("n_logical_qubits", n_logical_qubits, minimum=1)
    c = check_positive("logical_cycles", logical_cycles)
    b = check_open_unit("error_budget", error_budget)
    for dist in range(3, MAX_CODE_DISTANCE + 1, 2):
        if logical_error_rate(p, dist) * q * c <= b:
            return dist
    raise ValueError(
        f"no code distance <= {MAX_CODE_DISTANCE} meets error_budget={b} with p={p}, "
        f"{q} logical qubits and {c:.3g} logical cycles"
    )


@dataclass(frozen=True)
class FaultTolerantEstimate:
    """Surface-code resources of one QLSA run (all times **modeled** seconds).

    Attributes:
        toffolis_per_query: Toffolis per block-encoding query (:func:`toffolis_per_query`).
        logical_qubits: logical qubits incl. layout overhead (:func:`logical_qubits`).
        logical_cycles: logical cycles of one run = 3 · Toffolis per query · queries.
        code_distance: surface-code distance (:func:`code_distance`).
        logical_cycle_seconds: ``(4·t_2q + 2·t_meas)·code_distance``.
        toffoli_seconds: ``3 · logical_cycle_seconds``.
        seconds_per_query: ``toffolis_per_query · toffoli_seconds``.
    """

    toffolis_per_query: float
    logical_qubits: int
    logical_cycles: float
    code_distance: int
    logical_cycle_seconds: float
    toffoli_seconds: float
    seconds_per_query: float


def fault_tolerant_estimate(
    n: int, d: int, queries: float, profile: HardwareProfile
) -> FaultTolerantEstimate:
    """Surface-code time per query for a fault-tolerant profile.

    The code distance is chosen so that one complete QLSA run (``queries`` queries, i.e.
    3·T·queries logical cycles on :func:`logical_qubits` qubits) fails with probability at most
    ``profile.error_budget``. Toffolis are executed one after another (no Toffoli parallelism).
    Inputs: N, row sparsity d, query count, a ``"fault-tolerant"`` profile. Times are modeled.
    """
    if profile.kind != "fault-tolerant":
        raise ValueError(f"profile must be of kind 'fault-tolerant', got {profile.kind!r}")
    tof = toffolis_per_query(n, d, profile)
    qubits = logical_qubits(n, d, profile)
    cycles = LOGICAL_CYCLES_PER_TOFFOLI * tof * check_positive("queries", queries)
    dist = code_distance(profile.physical_error_rate, qubits, cycles, profile.error_budget)
    cycle_s = logical_cycle_seconds(profile, dist)
    toffoli_s = LOGICAL_CYCLES_PER_TOFFOLI * cycle_s
    return FaultTolerantEstimate(
        toffolis_per_query=tof,
        logical_qubits=qubits,
        logical_cycles=cycles,
        code_distance=dist,
        logical_cycle_seconds=cycle_s,
        toffoli_seconds=toffoli_s,
        seconds_per_query=tof * toffoli_s,
    )
