"""Surface-code resources of one QLSA run on a fault-tolerant profile (docs/method.md §4.4).

The logical error model, the logical cycle time and the lattice-surgery layout are those of the
Azure Resource Estimator's gate-based surface code (Beverland et al., "Assessing requirements to
scale to practical quantum advantage", arXiv 2211.07629). Data access is a QROAM (Low,
Kliuchnikov, Schaeffer, arXiv 1812.00954; Berry et al., arXiv 1902.02134). The error budget is
split between logical errors and magic-state distillation, and the magic-state factories
(:mod:`~qnewton.quantum.magic_states`) are counted in the physical qubits. Every time here is a
**modeled** number of seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnewton.quantum.magic_states import (
    PHYSICAL_QUBITS_PER_TILE_PER_D2,
    SURFACE_CODE_PREFACTOR,
    FactoryPlan,
    plan_factories,
)
from qnewton.quantum.profiles import (
    SURFACE_CODE_THRESHOLD,
    HardwareProfile,
    check_physical_error_rate,
    index_bits,
)
from qnewton.validation import check_int, check_open_unit, check_positive

# SURFACE_CODE_PREFACTOR, the prefactor A of the logical error rate A·(p/p_th)^((d+1)/2) per
# logical qubit per logical cycle, is ``crossingPrefactor`` = 0.03 of the Azure Resource
# Estimator's surface code (arXiv 2211.07629; fitted as in Fowler et al., arXiv 1208.0928, Eq. 11).
#: Logical cycles per Toffoli: a CCZ is executed as three multi-qubit Pauli measurements of one
#: logical cycle each (the Azure Resource Estimator's PSSPC schedule, arXiv 2211.07629).
LOGICAL_CYCLES_PER_TOFFOLI = 3
#: T states consumed per Toffoli (CCZ): 4 (Jones, arXiv 1212.5069; the estimator's
#: ``numTstates`` = 4·``cczCount``, arXiv 2211.07629).
T_STATES_PER_TOFFOLI = 4
#: Share of the error budget given to logical (memory and Clifford) errors; the rest goes to
#: magic-state distillation. The Azure Resource Estimator splits a single error budget equally
#: among logical errors, T-state distillation and rotation synthesis, and between the first two
#: when the algorithm has no arbitrary rotations (arXiv 2211.07629; its ``errorBudget``
#: documentation). A QLSA on our Toffoli counts has no rotations: one half each.
LOGICAL_BUDGET_SHARE = 0.5
#: Share of the budget for logical errors (and for T states) when the run has arbitrary rotations:
#: the estimator's equal three-way split among logical errors, T states and rotation synthesis.
ROTATION_RUN_LOGICAL_SHARE = 1.0 / 3.0
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


def algorithmic_qubits(n: int, d: int, profile: HardwareProfile) -> int:
    """Algorithmic logical qubits of one QLSA run, before the layout.

    ``Q_alg = ⌈√(N·d·w)⌉ + 2⌈log₂N⌉ + w + 10``: the QROAM's ≈√(N·d·w) work qubits at its
    Toffoli-optimal block size, row and column index registers, the data register, and
    :data:`QLSA_ANCILLA_QUBITS` further ancillas.
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1)
    w = profile.entry_bits(n)
    return math.ceil(math.sqrt(n * d * w)) + 2 * index_bits(n) + w + QLSA_ANCILLA_QUBITS


def logical_qubits(n: int, d: int, profile: HardwareProfile) -> int:
    """Logical qubits of one QLSA run after the surface-code layout:
    :func:`layout_qubits` of :func:`algorithmic_qubits`."""
    return layout_qubits(algorithmic_qubits(n, d, profile))


def code_distance(
    physical_error_rate: float, n_logical_qubits: int, logical_cycles: float, error_budget: float
) -> int:
    """Smallest odd surface-code distance d ≥ 3 meeting the error budget.

    ``logical_error_rate(p, d) · (#logical qubits) · (#logical cycles) ≤ error_budget``; the same
    rule as the Azure Resource Estimator's "smallest odd d ≥ 2·log(A/P)/log(p_th/p) − 1" with
    ``P = budget/(qubits·cycles)``. ``error_budget`` is the share given to logical errors
    (:func:`fault_tolerant_estimate` passes :data:`LOGICAL_BUDGET_SHARE` of the profile's).
    Raises ValueError if no d ≤ :data:`MAX_CODE_DISTANCE` suffices.
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
        code_distance: surface-code distance (:func:`code_distance`) for the logical share
            :data:`LOGICAL_BUDGET_SHARE` of the error budget.
        logical_cycle_seconds: ``(4·t_2q + 2·t_meas)·code_distance``.
        toffoli_seconds: ``3 · logical_cycle_seconds``.
        seconds_per_query: ``toffolis_per_query · toffoli_seconds``.
        t_states: T states of one run, ``4 · Toffolis``.
        factories: magic-state factories running in parallel.
        factory_physical_qubits: physical qubits of all factories.
        algorithm_physical_qubits: ``logical_qubits · 2·code_distance²``.
        physical_qubits: algorithm plus factories.
        factory: the factory design and its schedule (:class:`~qnewton.quantum.magic_states.
            FactoryPlan`).
    """

    toffolis_per_query: float
    logical_qubits: int
    logical_cycles: float
    code_distance: int
    logical_cycle_seconds: float
    toffoli_seconds: float
    seconds_per_query: float
    t_states: float
    factories: int
    factory_physical_qubits: int
    algorithm_physical_qubits: int
    physical_qubits: int
    factory: FactoryPlan
    rotation_cycles: float = 0.0


def fault_tolerant_estimate(
    n: int, d: int, queries: float, profile: HardwareProfile, *,
    toffolis: float | None = None, algorithmic: int | None = None,
    rotations: int = 0, t_per_rotation: int = 0,
) -> FaultTolerantEstimate:
    """Surface-code time per query and physical qubits for a fault-tolerant profile.

    The profile's error budget for one complete QLSA run (``queries`` queries, i.e.
    3·T·queries logical cycles on :func:`logical_qubits` qubits) is split: the share
    :data:`LOGICAL_BUDGET_SHARE` bounds the logical failures and fixes the code distance, the rest
    bounds the T states' errors (each of the 4·T·queries T states may fail with at most that
    share / their number) and fixes the factory design
    (:func:`~qnewton.quantum.magic_states.plan_factories`). Toffolis are executed one after
    another (no Toffoli parallelism); enough factories run beside the algorithm to supply them.
    Inputs: N, row sparsity d, query count, a ``"fault-tolerant"`` profile; ``toffolis`` per
    query and ``algorithmic`` qubits override the sparse-access counts (a structured block
    encoding, :mod:`~qnewton.quantum.block_encodings`). ``rotations`` arbitrary-angle rotations
    of ``t_per_rotation`` T gates each (:mod:`~qnewton.quantum.logical_counts`) add
    ``1 + t_per_rotation`` logical cycles and ``t_per_rotation`` T states apiece, and the budget
    is then split in thirds (logical, T states, rotation synthesis), as the Azure estimator does
    (arXiv 2211.07629). Times are modeled.
    """
    if profile.kind != "fault-tolerant":
        raise ValueError(f"profile must be of kind 'fault-tolerant', got {profile.kind!r}")
    tof = toffolis_per_query(n, d, profile) if toffolis is None else float(toffolis)
    qubits = (logical_qubits(n, d, profile) if algorithmic is None
              else layout_qubits(algorithmic))
    rotations = check_int("rotations", rotations, minimum=0)
    t_per_rotation = check_int("t_per_rotation", t_per_rotation, minimum=0)
    rotation_cycles = float(rotations * (1 + t_per_rotation))
    cycles = (LOGICAL_CYCLES_PER_TOFFOLI * tof * check_positive("queries", queries)
              + rotation_cycles)
    share = ROTATION_RUN_LOGICAL_SHARE if rotations else LOGICAL_BUDGET_SHARE
    logical_budget = share * profile.error_budget
    t_budget = share * profile.error_budget  # the rest, if rotations, is their synthesis
    dist = code_distance(profile.physical_error_rate, qubits, cycles, logical_budget)
    cycle_s = logical_cycle_seconds(profile, dist)
    toffoli_s = LOGICAL_CYCLES_PER_TOFFOLI * cycle_s
    t_states = T_STATES_PER_TOFFOLI * tof * queries + rotations * t_per_rotation
    plan = plan_factories(profile.physical_error_rate, t_states, t_budget / t_states,
                          cycles * cycle_s, logical_cycle_seconds(profile, 1))
    algorithm_qubits = qubits * PHYSICAL_QUBITS_PER_TILE_PER_D2 * dist * dist
    return FaultTolerantEstimate(
        toffolis_per_query=tof,
        logical_qubits=qubits,
        logical_cycles=cycles,
        code_distance=dist,
        logical_cycle_seconds=cycle_s,
        toffoli_seconds=toffoli_s,
        seconds_per_query=cycles * cycle_s / queries,
        rotation_cycles=rotation_cycles,
        t_states=t_states,
        factories=plan.copies,
        factory_physical_qubits=plan.physical_qubits,
        algorithm_physical_qubits=algorithm_qubits,
        physical_qubits=algorithm_qubits + plan.physical_qubits,
        factory=plan,
    )
