"""Accounting: a ledger of *measured* seconds by phase and *modeled* quantum seconds by profile.

Stage 7 of the pipeline (docs/method.md §3). Measured and modeled time are kept in separate
totals and are only combined by :meth:`Ledger.summary`, which says how: ``total_seconds`` =
measured wall clock − the time spent *emulating* quantum solves + the modeled quantum seconds.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
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
)


@dataclass
class SolveRecord:
    """One scheduling decision and its outcome, for one block at one optimizer step.

    Times: ``predicted_*`` are model predictions (classical: calibrated cost model on this
    machine; quantum: QLSA query count × hardware profile), ``measured_classical_seconds`` is wall
    clock of the classical solve actually run, ``modeled_quantum_seconds`` the profile's time for
    the quantum solve actually chosen, ``emulation_seconds`` the wall clock spent emulating it.
    """

    step: int
    block: str
    n: int
    d: int
    nnz: int
    kappa: float
    kappa_log10: float
    kappa_kind: str
    kappa_method: str
    alpha: float
    reg: float
    shift: float
    predicted_quantum_seconds: float
    predicted_classical_seconds: float
    predicted_classical: dict[str, float]
    classical_solver: str
    policy: str
    choice: str
    solver: str
    hardware: str
    qlsa: str
    readout: str
    queries: float
    measured_classical_seconds: float | None = None
    modeled_quantum_seconds: float | None = None
    emulation_seconds: float = 0.0
    residual: float | None = None
    kappa_ritz: float | None = None
    kappa_exact: float | None = None
    retries: int = 0
    fallback: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall-clock time of the ``with`` body to the measured phase ``name``."""
        if name not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {name!r}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.measured[name] += time.perf_counter() - start

    @contextmanager
    def diagnostics(self) -> Iterator[None]:
        """Time work done only for reporting; kept out of the measured training time."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.diagnostic_seconds += time.perf_counter() - start

    def add_record(self, record: SolveRecord) -> None:
        """Store a solve record and book its modeled quantum / emulation seconds."""
        self.records.append(record)
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
        """Totals with explicit labels; ``total_seconds`` says how it was combined."""
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
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.measured = defaultdict(float, state["measured"])
        self.modeled = defaultdict(float, state["modeled"])
        self.emulation_seconds = float(state["emulation_seconds"])
        self.diagnostic_seconds = float(state["diagnostic_seconds"])
        self.quantum_solves, self.classical_solves, self.fallbacks = state["counters"]
        self.records = [SolveRecord(**r) for r in state["records"]]
        self.events = list(state["events"])
