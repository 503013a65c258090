"""Accounting: a ledger of *measured* seconds by phase and *modeled* quantum seconds by profile.

Stage 7 of the pipeline (docs/method.md §3). Measured and modeled time are kept in separate
totals and are only combined by :meth:`Ledger.summary`, which says how: ``total_seconds`` =
measured wall clock − the time spent *emulating* quantum solves + the modeled quantum seconds.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PHASES = (
    "forward_backward",
    "curvature",
    "conditioning",
    "estimation",
    "scheduling",
    "solve",
    "update",
    # collectives of a distributed step (docs/method.md §4.10); never booked inside another phase
    "communication",
)


#: How one block's parameters were moved at one step (:meth:`Ledger.add_update`):
#: ``newton`` (a solved Newton direction), ``fallback`` (a gradient step in its place: memory,
#: failed solves, no solver, non-finite curvature), ``stationary`` (zero gradient: no move),
#: ``not-applied`` (a non-finite direction was dropped).
UPDATE_KINDS = ("newton", "fallback", "stationary", "not-applied")


@dataclass
class SolveRecord:
    """One scheduling decision and its outcome, for one block at one optimizer step.

    Times: ``predicted_*`` are model predictions (classical: calibrated cost model on this
    machine; quantum: QLSA query count × hardware profile), ``measured_classical_seconds`` is wall
    clock of the classical solve actually run, ``modeled_quantum_seconds`` the profile's time for
    the quantum solve actually chosen, ``emulation_seconds`` the wall clock spent emulating it.

    When κ could not change the decision it is not estimated (docs/method.md §4.8):
    ``kappa_kind`` is ``"not-estimated"``, ``kappa_method`` names the reason
    (:data:`~qnewton.scheduling.scheduler.SKIP_REASONS`), and ``kappa``,
    ``kappa_log10`` and ``alpha`` are ``None``. ``quantum_rejection`` repeats the reason the QLSA
    was not considered; ``predicted_quantum_seconds`` and ``queries`` are then ``None`` (not
    costed), except for a guaranteed rejection, where they are the cost at κ = 1, α = 1 that
    already lost (a lower bound). ``predicted_classical_seconds`` is ``None`` where the chosen
    solver has no prediction (CG on a matrix-free system). ``representation`` is ``"dense"``,
    ``"factor"`` or ``"matrix-free"`` (the system as solved).

    A quantum solve by a QSVT-output backend (``polynomial``, ``circuit``; docs/method.md §4.11)
    also records ``qlsa_backend``, the κ_eff its polynomial was built for, the actual
    polynomial degree next to the ``qsvt`` model's κ_eff·ln(κ_eff/ε) (``qlsa_degree_formula``),
    the amplitude-amplification runs and ``qlsa_queries`` = degree × runs (beside ``queries``,
    the configured model's prediction), the success probability, the recovered norm's relative
    error ``norm_error`` and the output's relative error ``qlsa_error`` against a classical solve.
    The emulated backend records only ``qlsa_backend``.
    """

    step: int
    block: str
    n: int
    d: int
    nnz: int
    kappa: float | None
    kappa_log10: float | None
    kappa_kind: str
    kappa_method: str
    alpha: float | None
    reg: float
    shift: float
    predicted_quantum_seconds: float | None
    predicted_classical_seconds: float | None
    predicted_classical: dict[str, float]
    classical_solver: str
    policy: str
    choice: str
    solver: str
    hardware: str
    qlsa: str
    readout: str
    queries: float | None
    measured_classical_seconds: float | None = None
    modeled_quantum_seconds: float | None = None
    emulation_seconds: float = 0.0
    residual: float | None = None
    kappa_ritz: float | None = None
    kappa_exact: float | None = None
    retries: int = 0
    fallback: str | None = None
    message: str = ""
    quantum_rejection: str | None = None
    representation: str = "dense"
    #: distributed runs: the rank that solved this block (``-1``: all ranks together, a
    #: matrix-free block); ``None`` in a single process
    rank: int | None = None
    qlsa_backend: str | None = None
    kappa_eff: float | None = None
    qlsa_degree: int | None = None
    qlsa_degree_formula: float | None = None
    qlsa_amplification: int | None = None
    qlsa_queries: float | None = None
    success_probability: float | None = None
    norm_error: float | None = None
    qlsa_error: float | None = None
    #: wall-clock seconds of the classical reference solve a QSVT-output backend ran for
    #: ``qlsa_error`` / ``norm_error``: a diagnostic, moved out of the measured ``solve`` phase
    reference_seconds: float = 0.0
    #: the backend that produced a quantum answer when it is not the configured one (e.g.
    #: ``"polynomial"`` for a block above the circuit backend's size limit)
    qlsa_backend_fallback: str | None = None
    #: the κ check of a QSVT-output backend (``"passed"``, ``"raised"`` after κ_eff was doubled
    #: until the output's residual met the polynomial's bound) and the κ_eff it started from
    kappa_check: str | None = None
    kappa_eff_given: float | None = None
    #: the block encoding the QLSA was priced with (the cheapest that applies) and the factor-form
    #: encoding's α, (c‖F‖_F² + λ)/‖A‖₂, for a factor-form block
    block_encoding: str | None = None
    alpha_factor: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def timed(book: Callable[[float], None]) -> Iterator[None]:
    """Pass the wall-clock seconds of the ``with`` body to ``book``, also when it raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        book(time.perf_counter() - start)


def check_phase(name: str) -> None:
    if name not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {name!r}")


@dataclass
class PhaseClock:
    """Measured seconds by phase (and diagnostic seconds) of one piece of work, kept apart from
    any ledger until the caller books them (:meth:`Ledger.add_seconds`): a block solve returns
    its clock with its outcome instead of writing to the ledger itself."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    diagnostic_seconds: float = 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall-clock time of the ``with`` body to the measured phase ``name``."""
        check_phase(name)
        with timed(lambda t: self.seconds.__setitem__(name, self.seconds[name] + t)):
            yield

    @contextmanager
    def diagnostics(self) -> Iterator[None]:
        """Time work done only for reporting (never measured training time)."""
        with timed(lambda t: setattr(self, "diagnostic_seconds", self.diagnostic_seconds + t)):
            yield


@dataclass
class Ledger:
    """Accumulates measured phase seconds, modeled quantum seconds and per-solve records.

    Counters are kept incrementally, so a long run can :meth:`drain` records and events to disk
    without changing the totals. Diagnostics (e.g. exact κ for reports, evaluation) are timed in
    ``diagnostic_seconds`` and are *not* part of the method's measured time.
    """

    measured: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    modeled: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    emulation_seconds: float = 0.0
    diagnostic_seconds: float = 0.0
    quantum_solves: int = 0
    classical_solves: int = 0
    fallbacks: int = 0
    records: list[SolveRecord] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: per block: its parameter count and how many steps moved it each way (:data:`UPDATE_KINDS`,
    #: plus ``newton_matrix_free``, the Newton steps solved on a matrix-free block)
    updates: dict[str, dict[str, int]] = field(default_factory=dict)
    #: fallback block-steps by reason
    fallback_reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: distributed runs: measured seconds of each rank's own block work (condition, analyse,
    #: schedule, solve), summed over steps; and Σ over steps of the slowest rank's share, the
    #: solves' critical path (docs/method.md §4.10)
    rank_seconds: list[float] = field(default_factory=list)
    critical_path_seconds: float = 0.0
    #: steps that built curvature and steps that reused earlier curvature
    curvature_computed: int = 0
    curvature_reused: int = 0
    #: steps whose curvature was built as another kind than configured (the Monte-Carlo GGN
    #: for a many-output GGN), by the kind built
    curvature_substituted: dict[str, int] = field(default_factory=dict)
    #: the last step's curvature: {"curvature": "computed"|"reused", "curvature_samples": k,
    #: "batch_samples": S}, taken (and cleared) by :meth:`take_curvature`
    last_curvature: dict[str, Any] | None = None

    def add_rank_seconds(self, seconds: list[float]) -> None:
        """Book one distributed step's measured block-work seconds, by rank."""
        if len(self.rank_seconds) < len(seconds):
            self.rank_seconds.extend([0.0] * (len(seconds) - len(self.rank_seconds)))
        for r, t in enumerate(seconds):
            self.rank_seconds[r] += float(t)
        self.critical_path_seconds += max(seconds, default=0.0)
    #: per step of an adaptive step rule: damping λ, step size α, ρ, accepted, backtracks
    step_rule: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall-clock time of the ``with`` body to the measured phase ``name``."""
        check_phase(name)
        with timed(lambda t: self.measured.__setitem__(name, self.measured[name] + t)):
            yield

    def add_seconds(self, clock: PhaseClock) -> None:
        """Book the measured and diagnostic seconds of a :class:`PhaseClock`."""
        for name, seconds in clock.seconds.items():
            self.measured[name] += seconds
        self.diagnostic_seconds += clock.diagnostic_seconds

    @contextmanager
    def diagnostics(self) -> Iterator[None]:
        """Time work done only for reporting; kept out of the measured training time."""
        with timed(lambda t: setattr(self, "diagnostic_seconds", self.diagnostic_seconds + t)):
            yield

    def add_record(self, record: SolveRecord) -> None:
        """Store a solve record and book its modeled quantum / emulation seconds."""
        self.records.append(record)
        if record.reference_seconds and record.rank is None:
            # made in this process (exchanged records carry their rank): its backend's reference
            # solve ran inside the measured "solve" phase, but is a diagnostic, not training time
            self.measured["solve"] -= record.reference_seconds
            self.diagnostic_seconds += record.reference_seconds
        if record.modeled_quantum_seconds is not None:
            self.modeled[record.hardware] += record.modeled_quantum_seconds
        self.emulation_seconds += record.emulation_seconds
        if record.solver != "none":
            if record.choice == "quantum":
                self.quantum_solves += 1
            else:
                self.classical_solves += 1
        if record.fallback == "gradient":
            self.fallbacks += 1

    def add_update(self, block: str, parameters: int, kind: str, *, reason: str | None = None,
                   matrix_free: bool = False) -> None:
        """Book how ``block`` (``parameters`` parameters) was moved at one step: ``kind`` in
        :data:`UPDATE_KINDS`; ``reason`` for a fallback; ``matrix_free`` for a Newton direction
        solved on a matrix-free block."""
        if kind not in UPDATE_KINDS:
            raise ValueError(f"kind must be one of {UPDATE_KINDS}, got {kind!r}")
        entry = self.updates.setdefault(block, {"parameters": int(parameters), **dict.fromkeys(
            (*UPDATE_KINDS, "newton_matrix_free"), 0)})
        entry["parameters"] = int(parameters)
        entry[kind] += 1
        if kind == "newton" and matrix_free:
            entry["newton_matrix_free"] += 1
        if kind == "fallback":
            self.fallback_reasons[reason or "unspecified"] += 1

    def add_curvature(self, *, reused: bool, samples: int, of: int,
                      substituted: tuple[str, str] | None = None,
                      reason: str | None = None) -> None:
        """Book one step's curvature: built (from ``samples`` of the step's ``of`` samples) or
        reused from an earlier step (``samples``: how many that curvature was built from).
        ``substituted``: ``(kind built, why)`` when that is not the configured kind (the
        Monte-Carlo GGN for many outputs); recorded in the step's row and counted per run.
        ``reason``: why it was built, or ``"reused"``
        (:data:`~qnewton.curvature.schedule.BUILD_REASONS`), in the step's row."""
        if reused:
            self.curvature_reused += 1
        else:
            self.curvature_computed += 1
        self.last_curvature = {"curvature": "reused" if reused else "computed",
                               "curvature_samples": int(samples), "batch_samples": int(of)}
        if reason is not None:
            self.last_curvature["curvature_reason"] = reason
        if substituted is not None:
            kind, why = substituted
            self.last_curvature.update(curvature_kind=kind, curvature_substituted=why)
            self.curvature_substituted[kind] = self.curvature_substituted.get(kind, 0) + 1

    def take_curvature(self) -> dict[str, Any]:
        """The last step's curvature record (empty if none since the last call), for steps.jsonl."""
        row, self.last_curvature = self.last_curvature or {}, None
        return row
    def add_step_rule(self, info: dict[str, Any]) -> None:
        """Book one step's step-rule figures (damping λ, step size α, ρ, ...)."""
        self.step_rule.append(dict(info))

    def parameter_updates(self) -> dict[str, int]:
        """Parameter-steps moved each way: Σ over blocks of parameters × steps, per
        :data:`UPDATE_KINDS` (and ``newton_matrix_free``, part of ``newton``)."""
        keys = (*UPDATE_KINDS, "newton_matrix_free")
        return {k: sum(e["parameters"] * e[k] for e in self.updates.values()) for k in keys}

    def drain(self) -> tuple[list[SolveRecord], list[dict[str, Any]]]:
        """Hand over (and forget) the records and events stored so far; totals are kept."""
        records, events = self.records, self.events
        self.records, self.events = [], []
        return records, events

    def add_event(self, step: int, kind: str, message: str, **details: Any) -> None:
        """Report something that was handled (non-finite values, fallbacks, retries)."""
        self.events.append({"step": step, "kind": kind, "message": message, **details})

    @property
    def measured_seconds(self) -> float:
        """Total measured wall-clock seconds over all phases (emulation included)."""
        return sum(self.measured.values())

    @property
    def modeled_quantum_seconds(self) -> float:
        """Total modeled quantum seconds over all hardware profiles."""
        return sum(self.modeled.values())

    def summary(self) -> dict[str, Any]:
        """Totals with explicit labels; ``total_seconds`` says how it was combined.

        ``parameter_updates`` counts parameter-steps by how they were moved (a Newton direction,
        a fallback gradient step, ...), ``newton_parameter_fraction`` is Newton's share of the
        moved ones (Newton + fallback; ``None`` before any), ``updates_by_block`` gives each
        block's parameter count and step counts, and ``fallback_reasons`` counts fallback
        block-steps by reason: a run cannot report Newton while gradient steps did the work.
        """
        moved = self.parameter_updates()
        denominator = moved["newton"] + moved["fallback"]
        return {
            "measured_seconds": self.measured_seconds,
            "measured_by_phase": dict(self.measured),
            "emulation_seconds": self.emulation_seconds,
            "modeled_quantum_seconds": self.modeled_quantum_seconds,
            "modeled_by_profile": dict(self.modeled),
            "total_seconds": self.measured_seconds
            - self.emulation_seconds
            + self.modeled_quantum_seconds,
            "total_seconds_formula": "measured - emulation + modeled_quantum",
            "diagnostic_seconds": self.diagnostic_seconds,
            "quantum_solves": self.quantum_solves,
            "classical_solves": self.classical_solves,
            "gradient_fallbacks": self.fallbacks,
            "parameter_updates": moved,
            "newton_parameter_fraction": moved["newton"] / denominator if denominator else None,
            "updates_by_block": {b: dict(e) for b, e in self.updates.items()},
            "fallback_reasons": dict(self.fallback_reasons),
            **({"rank_solve_seconds": list(self.rank_seconds),
                "critical_path_seconds": self.critical_path_seconds,
                "ranks": len(self.rank_seconds)} if self.rank_seconds else {}),
            "curvature_computed": self.curvature_computed,
            "curvature_reused": self.curvature_reused,
            **({"curvature_substituted": dict(self.curvature_substituted)}
               if self.curvature_substituted else {}),
        }

    def write_jsonl(self, path: str | Path) -> None:
        """Write one JSON object per solve record to ``path``."""
        with Path(path).open("w", encoding="utf-8") as fh:
            for record in self.records:
                fh.write(json.dumps(record.to_dict()) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {
            "measured": dict(self.measured),
            "modeled": dict(self.modeled),
            "emulation_seconds": self.emulation_seconds,
            "diagnostic_seconds": self.diagnostic_seconds,
            "counters": [self.quantum_solves, self.classical_solves, self.fallbacks],
            "records": [r.to_dict() for r in self.records],
            "events": list(self.events),
            "updates": {b: dict(e) for b, e in self.updates.items()},
            "fallback_reasons": dict(self.fallback_reasons),
            "rank_seconds": list(self.rank_seconds),
            "critical_path_seconds": self.critical_path_seconds,
            "curvature_counts": [self.curvature_computed, self.curvature_reused],
            "step_rule": [dict(r) for r in self.step_rule],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.measured = defaultdict(float, state["measured"])
        self.modeled = defaultdict(float, state["modeled"])
        self.emulation_seconds = float(state["emulation_seconds"])
        self.diagnostic_seconds = float(state["diagnostic_seconds"])
        self.quantum_solves, self.classical_solves, self.fallbacks = state["counters"]
        self.records = [SolveRecord(**r) for r in state["records"]]
        self.events = list(state["events"])
        # Checkpoints written before update counts existed load with none.
        self.updates = {b: dict(e) for b, e in state.get("updates", {}).items()}
        self.fallback_reasons = defaultdict(int, state.get("fallback_reasons", {}))
        self.rank_seconds = [float(t) for t in state.get("rank_seconds", [])]
        self.critical_path_seconds = float(state.get("critical_path_seconds", 0.0))
        self.curvature_computed, self.curvature_reused = state.get("curvature_counts", [0, 0])
        self.step_rule = [dict(r) for r in state.get("step_rule", [])]
