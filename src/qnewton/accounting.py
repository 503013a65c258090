"""Accounting: a ledger of *measured* seconds by phase and *modeled* quantum seconds by profile.

Stage 7 of the pipeline (DESIGN §3). Measured and modeled time are kept in separate totals and
are only combined by :meth:`Ledger.summary`, which says how: ``total_seconds`` = measured wall
clock − the time spent *emulating* quantum solves + the modeled quantum seconds.
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
    retries: int = 0
    fallback: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ledger:
    """Accumulates measured phase seconds, modeled quantum seconds and per-solve records."""

    measured: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    modeled: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    emulation_seconds: float = 0.0
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

    def add_record(self, record: SolveRecord) -> None:
        """Store a solve record and book its modeled quantum / emulation seconds."""
        self.records.append(record)
        if record.modeled_quantum_seconds is not None:
            self.modeled[record.hardware] += record.modeled_quantum_seconds
        self.emulation_seconds += record.emulation_seconds

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
        quantum = sum(r.choice == "quantum" for r in self.records)
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
            "quantum_solves": quantum,
            "classical_solves": len(self.records) - quantum,
            "fallbacks": sum(r.fallback is not None for r in self.records),
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
            "records": [r.to_dict() for r in self.records],
            "events": list(self.events),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.measured = defaultdict(float, state["measured"])
        self.modeled = defaultdict(float, state["modeled"])
        self.emulation_seconds = float(state["emulation_seconds"])
        self.records = [SolveRecord(**r) for r in state["records"]]
        self.events = list(state["events"])
