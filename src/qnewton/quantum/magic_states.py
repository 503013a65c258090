"""Magic-state factories of the surface-code model: 15-to-1 distillation pipelines that turn raw
T states (error rate p) into T states good enough for the run (docs/method.md §4.4).

The distillation units and their error and failure models are those of the Azure Resource
Estimator (Beverland et al., "Assessing requirements to scale to practical quantum advantage",
arXiv 2211.07629, Appendix C and Table VI; the same coefficients are in the ``qdk`` package's
``RoundBasedFactory``), built on Bravyi and Kitaev's 15-to-1 protocol (quant-ph/0403025). Every
time here is a **modeled** number of seconds.

Simplifications against the estimator, stated: only logical units (distance ≥ 3; the estimator
also tries physical-level units), at most :data:`MAX_ROUNDS` rounds, one output state per
factory run, and the factory chosen is the one that needs the fewest physical qubits in all for
the run (copies × footprint); designs with more rounds are tried only when fewer rounds cannot
reach the required error.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from qnewton.quantum.profiles import SURFACE_CODE_THRESHOLD, check_physical_error_rate
from qnewton.validation import check_int, check_open_unit, check_positive

#: Logical error prefactor A of ``A·(p/p_th)^((d+1)/2)`` (``crossingPrefactor`` of the estimator's
#: surface code, arXiv 2211.07629); the same constant as
#: :data:`qnewton.quantum.fault_tolerant.SURFACE_CODE_PREFACTOR`, which imports this one.
SURFACE_CODE_PREFACTOR = 0.03
#: Physical qubits per logical qubit (tile) of distance d: ``2·d²`` (``physicalQubitsPerLogical
#: Qubit`` of the estimator's surface code: d² data and d² − 1 measurement qubits, rounded).
PHYSICAL_QUBITS_PER_TILE_PER_D2 = 2
#: Largest probability that a round yields fewer good states than the next round needs (the
#: estimator's per-round failure requirement, 1%; ``RoundBasedFactory`` in ``qdk``).
ROUND_FAILURE_PROBABILITY = 0.01
#: Most distillation rounds (the estimator's ``maxDistillationRounds``, 3).
MAX_ROUNDS = 3
#: Largest distance tried for a unit of an earlier round (the estimator's default
#: ``maxCodeDistance``, 50: an earlier round never needs more).
MAX_UNIT_DISTANCE = 49
#: Largest distance of the last round: the algorithm's own limit
#: (:data:`qnewton.quantum.fault_tolerant.MAX_CODE_DISTANCE`).
MAX_LAST_DISTANCE = 2001
#: Input T states per 15-to-1 unit.
INPUTS_PER_UNIT = 15


@dataclass(frozen=True)
class DistillationUnit:
    """One logical 15-to-1 distillation unit (arXiv 2211.07629, Table VI).

    Attributes:
        name: the estimator's unit name.
        tiles: logical qubits (tiles) of the unit.
        cycles: logical cycles of one run of the unit.

    Output error ``35·p_in³ + 7.1·p_L`` and failure probability ``15·p_in + 356·p_L``, with
    ``p_L`` the logical error rate per tile per cycle at the unit's distance.
    """

    name: str
    tiles: int
    cycles: int

    @staticmethod
    def output_error(p_in: float, p_logical: float) -> float:
        """Error rate of a distilled T state: ``35·p_in³ + 7.1·p_L``."""
        return 35.0 * p_in**3 + 7.1 * p_logical

    @staticmethod
    def failure_probability(p_in: float, p_logical: float) -> float:
        """Probability the unit's checks reject its output: ``15·p_in + 356·p_L``."""
        return 15.0 * p_in + 356.0 * p_logical


#: The estimator's two logical 15-to-1 units: "space efficient" (20 tiles, 13 cycles) and
#: "RM prep" (Reed–Muller state preparation; 31 tiles, 11 cycles).
UNITS = (
    DistillationUnit(name="15-to-1 space efficient", tiles=20, cycles=13),
    DistillationUnit(name="15-to-1 RM prep", tiles=31, cycles=11),
)


@dataclass(frozen=True)
class Factory:
    """A magic-state factory: rounds of distillation units, one output T state per run.

    Attributes:
        unit_names: unit name per round (first round first).
        distances: code distance per round.
        units_per_round: copies of the unit per round.
        physical_qubits: footprint of one factory, the largest round's (rounds reuse the qubits,
            as in the estimator's report).
        logical_cycles_per_round: logical cycles per round.
        output_error: error rate of the output T state.
    """

    unit_names: tuple[str, ...]
    distances: tuple[int, ...]
    units_per_round: tuple[int, ...]
    physical_qubits: int
    logical_cycles_per_round: tuple[int, ...]
    output_error: float

    def seconds(self, cycle_seconds_per_distance: float) -> float:
        """**Modeled** seconds of one factory run: Σ cycles·(logical cycle time at d)."""
        return sum(c * cycle_seconds_per_distance * d
                   for c, d in zip(self.logical_cycles_per_round, self.distances, strict=True))


def _logical_rate(p: float, distance: int) -> float:
    return SURFACE_CODE_PREFACTOR * (p / SURFACE_CODE_THRESHOLD) ** ((distance + 1) / 2)


def units_needed(outputs: int, failure: float) -> int:
    """Fewest units, each failing with probability ``failure``, that yield at least ``outputs``
    good states with probability ≥ 1 − :data:`ROUND_FAILURE_PROBABILITY` (binomial)."""
    outputs = check_int("outputs", outputs, minimum=1)
    if not 0.0 <= failure < 0.5:
        raise ValueError(f"failure must be in [0, 0.5), got {failure!r}")
    return _units_needed(outputs, float(failure))


@functools.lru_cache(maxsize=4096)
def _units_needed(outputs: int, failure: float) -> int:
    n = outputs
    while True:
        # P(fewer than `outputs` of n units succeed)
        short = sum(math.comb(n, j) * (1.0 - failure) ** j * failure ** (n - j)
                    for j in range(outputs))
        if short <= ROUND_FAILURE_PROBABILITY:
            return n
        n += 1


def _build(rounds: list[tuple[DistillationUnit, int]], p: float) -> Factory | None:
    """The factory running ``rounds`` (unit, distance) on raw T states of error ``p``; ``None``
    when a unit would fail half the time or more."""
    needed, counts = 1, []
    for _ in rounds:
        counts.append(needed)
        needed *= INPUTS_PER_UNIT
    counts.reverse()
    units, err = [], p
    for (unit, dist), outputs in zip(rounds, counts, strict=True):
        p_l = _logical_rate(p, dist)
        fail = unit.failure_probability(err, p_l)
        if fail >= 0.5:
            return None
        units.append(units_needed(outputs, fail))
        err = unit.output_error(err, p_l)
    qubits = max(n * u.tiles * PHYSICAL_QUBITS_PER_TILE_PER_D2 * d * d
                 for n, (u, d) in zip(units, rounds, strict=True))
    return Factory(
        unit_names=tuple(u.name for u, _d in rounds),
        distances=tuple(d for _u, d in rounds),
        units_per_round=tuple(units),
        physical_qubits=qubits,
        logical_cycles_per_round=tuple(u.cycles for u, _d in rounds),
        output_error=err,
    )


def _last_distance(p: float, p_in: float, required_error: float) -> int | None:
    """Smallest odd distance d ≥ 3 at which a last round fed states of error ``p_in`` outputs
    error ≤ ``required_error`` (``35·p_in³ + 7.1·p_L(d)``), or ``None`` if none ≤
    :data:`MAX_LAST_DISTANCE` does."""
    room = required_error - 35.0 * p_in**3
    if room <= 0.0:
        return None
    # 7.1·A·(p/p_th)^((d+1)/2) ≤ room  ⇔  (d+1)/2 ≥ ln(room/(7.1·A)) / ln(p/p_th)
    half = math.log(room / (7.1 * SURFACE_CODE_PREFACTOR)) / math.log(p / SURFACE_CODE_THRESHOLD)
    dist = max(3, 2 * math.ceil(max(half, 0.0)) - 1)
    while dist <= MAX_LAST_DISTANCE and 7.1 * _logical_rate(p, dist) > room:
        dist += 2  # floating-point guard: at most a step or two
    return dist if dist <= MAX_LAST_DISTANCE else None


def _designs(p: float, required_error: float) -> list[Factory]:
    """For every choice of the earlier rounds (unit, distance ≤ :data:`MAX_UNIT_DISTANCE`), the
    last round's unit at the smallest distance meeting ``required_error``: a larger last distance
    only costs more qubits and time. Designs of r + 1 rounds are tried only when none of r rounds
    reaches the error (more rounds only add qubits and time otherwise), up to
    :data:`MAX_ROUNDS`."""
    early = [(u, d) for u in UNITS for d in range(3, MAX_UNIT_DISTANCE + 1, 2)]
    prefixes: list[list[tuple[DistillationUnit, int]]] = [[]]
    for _rounds in range(MAX_ROUNDS):
        out = []
        for prefix in prefixes:
            head = _build(prefix, p) if prefix else None
            if prefix and head is None:
                continue
            p_in = head.output_error if head is not None else p
            dist = _last_distance(p, p_in, required_error)
            if dist is None:
                continue
            for last in UNITS:
                f = _build([*prefix, (last, dist)], p)
                if f is not None and f.output_error <= required_error:
                    out.append(f)
        if out:
            return out
        prefixes = [[*prefix, stage] for prefix in prefixes for stage in early]
    return []


@dataclass(frozen=True)
class FactoryPlan:
    """Factories that supply one QLSA run with T states (times **modeled**).

    Attributes:
        factory: the factory design (:class:`Factory`).
        factory_seconds: modeled seconds of one factory run.
        copies: factories running in parallel.
        runs_per_copy: factory runs each copy makes within the algorithm's runtime.
        physical_qubits: ``copies · factory.physical_qubits``.
    """

    factory: Factory
    factory_seconds: float
    copies: int
    runs_per_copy: int
    physical_qubits: int


def plan_factories(physical_error_rate: float, t_states: float, required_error: float,
                   runtime_seconds: float, cycle_seconds_per_distance: float) -> FactoryPlan:
    """The factories of one run: the design needing the fewest physical qubits in all.

    Inputs: physical error rate p (raw T states have error p), T states to produce, the
    required error per output T state (T-state share of the budget / T states), the algorithm's
    modeled runtime in seconds, and the logical cycle time per unit distance
    ``4·t_2q + 2·t_meas`` in seconds. Copies: ``⌈T states / ⌊runtime / factory time⌋⌉`` (at
    least one run per copy), as the estimator's ``numTfactories``. Raises ValueError when no
    design of at most :data:`MAX_ROUNDS` rounds reaches ``required_error``.
    """
    p = check_physical_error_rate(physical_error_rate)
    t = check_positive("t_states", t_states)
    r = check_open_unit("required_error", required_error)
    runtime = check_positive("runtime_seconds", runtime_seconds)
    per_d = check_positive("cycle_seconds_per_distance", cycle_seconds_per_distance)
    best: FactoryPlan | None = None
    for f in _designs(p, r):
        secs = f.seconds(per_d)
        runs = max(1, math.floor(runtime / secs))
        copies = math.ceil(t / runs)
        total = copies * f.physical_qubits
        if best is None or total < best.physical_qubits:
            best = FactoryPlan(factory=f, factory_seconds=secs, copies=copies,
                               runs_per_copy=runs, physical_qubits=total)
    if best is None:
        raise ValueError(
            f"no magic-state factory of at most {MAX_ROUNDS} rounds of 15-to-1 at distance <= "
            f"{MAX_LAST_DISTANCE} reaches a T-state error of {r:.3g} at p={p}")
    return best
