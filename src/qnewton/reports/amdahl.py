"""Where quantum would pay off: Amdahl's bound on a run and each block's break-even hardware
(docs/method.md §4.9).

Two questions, answered from a finished run:

1. **Measured**: what share of the measured step time is the solve phase — all a free,
   instantaneous QLSA could remove — and what share it cannot touch (curvature,
   forward/backward, the rest)? Amdahl's law bounds the speed-up at ``1/(1 − p)`` with p the
   solve share (Amdahl, AFIPS 1967).
2. **Modeled**: for each block (its last costed solve), at which gate time (at the profile's error
   rate) and at which physical error rate (at the profile's gate time) would the block's modeled
   quantum time equal its predicted classical time? Both are found by bisection on the profile
   field with the scheduler's own cost model (:func:`qnewton.quantum.quantum_cost`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qnewton.accounting import PHASES
from qnewton.quantum import HARDWARE_PROFILES, HardwareProfile, get_profile, quantum_cost
from qnewton.quantum.profiles import SURFACE_CODE_THRESHOLD
from qnewton.reports.html import MEASURED, esc, fmt, note, secs, table
from qnewton.reports.reading import RunData

#: Phases only the quantum option needs: κ and α estimation, and the routing decision itself
#: (a classical-only run skips κ estimation, docs/method.md §4.8). Charged to the quantum option.
QUANTUM_OVERHEAD_PHASES = ("estimation", "scheduling")
#: Phases reported on their own among those a QLSA cannot remove; the rest are summed as "other".
FIXED_PHASES = ("curvature", "forward_backward")
#: The parts of the measured time, in the order the report lists them.
PARTS = ("solve", "emulation", "overhead", "curvature", "forward_backward", "other")
#: Search range of the break-even gate time, in seconds (1e-30 s is far below any physical
#: gate, 1e6 s far above; a break-even outside it is reported as none).
GATE_TIME_RANGE = (1e-30, 1e6)
#: Smallest physical error rate searched: below it the code distance is already the minimum 3.
ERROR_RATE_FLOOR = 1e-15
#: Relative tolerance of the bisections (on the searched value, in log space).
BISECTION_RTOL = 1e-10


@dataclass(frozen=True)
class PhaseShares:
    """The **measured** time split by what a QLSA could do about it, and Amdahl's bound.

    A free, instantaneous QLSA removes the classical solve time, no more: the time spent
    *emulating* quantum solves is an artefact of running without a quantum computer (neither
    option would spend it), and κ/α estimation and routing are spent only so that the quantum
    option can be chosen, so they are charged to it.

    Attributes:
        measured_seconds: Σ of the measured phase seconds (emulation included).
        seconds: measured seconds per part: ``solve`` (classical solves actually run, emulation
            excluded), ``emulation``, ``overhead`` (:data:`QUANTUM_OVERHEAD_PHASES`),
            ``curvature``, ``forward_backward``, ``other``.
        shares: the same as fractions of ``measured_seconds`` (they sum to 1).
        routed_classical_seconds: **predicted** classical seconds of the solves routed to the
            QLSA (what the classical option would have spent on them).
        classical_seconds: the classical option: measured − emulation − overhead + routed.
        removable_seconds: its solve time: ``seconds["solve"]`` + routed.
        removable_share: removable / classical option (Amdahl's p).
        amdahl_max_speedup: ``1/(1 − p)``: a free QLSA with no overhead of its own (``inf``
            when everything is solve time).
        net_max_speedup: classical option / (classical option − removable + overhead): a free
            QLSA charged the overhead it needs (below 1: the quantum option is slower).
    """

    measured_seconds: float
    seconds: dict[str, float]
    shares: dict[str, float]
    routed_classical_seconds: float
    classical_seconds: float
    removable_seconds: float
    removable_share: float
    amdahl_max_speedup: float
    net_max_speedup: float


def _seconds_value(name: str, value: Any) -> float:
    v = float(value)
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def phase_shares(measured_by_phase: Mapping[str, Any], emulation_seconds: float = 0.0,
                 routed_classical_seconds: float = 0.0) -> PhaseShares:
    """:class:`PhaseShares` of a run's ``measured_by_phase`` (phase → measured seconds ≥ 0), its
    ``emulation_seconds`` (measured inside the solve phase) and the predicted classical seconds
    of its quantum-routed solves.

    Unknown phase names, negative / non-finite seconds, emulation beyond the solve phase or an
    all-zero breakdown raise ValueError naming the allowed phases
    (:data:`qnewton.accounting.PHASES`).
    """
    if not isinstance(measured_by_phase, Mapping):
        raise ValueError("measured_by_phase must be a mapping of phase to seconds, got "
                         f"{type(measured_by_phase).__name__}")
    parts = dict.fromkeys(PARTS, 0.0)
    for phase, value in measured_by_phase.items():
        if phase not in PHASES:
            raise ValueError(f"measured_by_phase has phase {phase!r}; allowed phases: "
                             f"{', '.join(PHASES)}")
        v = _seconds_value(f"measured_by_phase[{phase!r}]", value)
        key = ("solve" if phase == "solve" else "overhead" if phase in QUANTUM_OVERHEAD_PHASES
               else phase if phase in FIXED_PHASES else "other")
        parts[key] += v
    emulation = _seconds_value("emulation_seconds", emulation_seconds)
    routed = _seconds_value("routed_classical_seconds", routed_classical_seconds)
    if emulation > parts["solve"] * (1 + 1e-9) + 1e-12:
        raise ValueError(f"emulation_seconds ({emulation:.6g}) exceeds the solve phase "
                         f"({parts['solve']:.6g}) it is measured in")
    emulation = min(emulation, parts["solve"])
    parts["solve"] -= emulation
    parts["emulation"] = emulation
    total = sum(parts.values())
    if total <= 0.0:
        raise ValueError("measured_by_phase must have some measured time, got all zeros")
    shares = {k: v / total for k, v in parts.items()}
    classical = total - emulation - parts["overhead"] + routed
    removable = parts["solve"] + routed
    p = removable / classical if classical > 0 else 0.0
    quantum = classical - removable + parts["overhead"]
    return PhaseShares(
        measured_seconds=total, seconds=parts, shares=shares, routed_classical_seconds=routed,
        classical_seconds=classical, removable_seconds=removable, removable_share=p,
        amdahl_max_speedup=math.inf if p >= 1.0 else 1.0 / (1.0 - p),
        net_max_speedup=math.inf if quantum <= 0.0 else classical / quantum)


@dataclass(frozen=True)
class BreakEven:
    """One block's break-even hardware (all quantum times **modeled**, classical **predicted**).

    Attributes:
        block, step, n, d, kappa, alpha: the solve record the figures are computed for.
        classical_seconds: predicted seconds of the best allowed classical solver.
        quantum_seconds: modeled quantum seconds on the run's profile.
        gate_field: the profile field searched for the gate time (``gate_time_s`` or ``t_2q_s``;
            for fault-tolerant profiles the measurement time scales with it).
        gate_time_s: the profile's value of that field.
        break_even_gate_time_s: the gate time at which quantum = classical; ``None`` if none in
            :data:`GATE_TIME_RANGE` (``gate_note`` says why).
        error_rate: the profile's physical error rate (``None`` for gate-count profiles).
        break_even_error_rate: the largest error rate at which quantum ≤ classical; ``None`` if
            none (``error_note`` says why).
        model: the profile the figures were computed on (a ``qdk-`` profile's twin: our model,
            which reproduces the estimator's runtime, docs/method.md §4.4).
    """

    block: str
    step: int
    n: int
    d: int
    kappa: float
    alpha: float
    classical_seconds: float
    quantum_seconds: float
    gate_field: str
    gate_time_s: float
    break_even_gate_time_s: float | None
    gate_note: str
    error_rate: float | None
    break_even_error_rate: float | None
    error_note: str
    model: str


def _cost_model_profile(profile: HardwareProfile) -> HardwareProfile:
    """The profile the bisections run on: a qdk-estimator profile's own-model twin (same fields),
    since hundreds of estimator calls per block would be slow and our runtime equals qdk's."""
    if profile.kind != "qdk-estimator":
        return profile
    return dataclasses.replace(profile, name=f"{profile.name} (our model)", kind="fault-tolerant",
                               qdk_qubit_params=None)


def _bisect_log(f: Callable[[float], bool], lo: float, hi: float) -> float:
    """The boundary x in [lo, hi] where ``f`` (True at lo, False at hi) switches, bisected in
    log space to :data:`BISECTION_RTOL`; returns the last x where f holds."""
    a, b = math.log(lo), math.log(hi)
    while b - a > BISECTION_RTOL:
        mid = 0.5 * (a + b)
        if f(math.exp(mid)):
            a = mid
        else:
            b = mid
    return math.exp(a)


def _seconds(rec: Mapping[str, Any], eps: float, profile: HardwareProfile) -> float:
    """Modeled quantum seconds of the record's system, as the scheduler computes them; +inf where
    the cost model has no answer (no code distance meets the budget)."""
    try:
        return quantum_cost(int(rec["n"]), max(1, int(rec["d"])), float(rec["kappa"]), eps,
                            alpha=float(rec["alpha"]), qlsa=str(rec["qlsa"]), profile=profile,
                            readout=str(rec["readout"]),
                            nnz=min(int(rec["nnz"]), int(rec["n"]) * max(1, int(rec["d"])))
                            or None).total_seconds
    except ValueError:
        return math.inf


def _with_gate_time(profile: HardwareProfile, t: float) -> HardwareProfile:
    if profile.kind == "gate-count":
        return dataclasses.replace(profile, gate_time_s=t)
    return dataclasses.replace(profile, t_2q_s=t, t_meas_s=profile.t_meas_s * t / profile.t_2q_s)


def break_even(rec: Mapping[str, Any], eps: float, profile: HardwareProfile) -> BreakEven:
    """The break-even gate time and error rate of one solve record (a ``solves.jsonl`` row with
    ``n``, ``d``, ``nnz``, ``kappa``, ``alpha``, ``qlsa``, ``readout`` and
    ``predicted_classical_seconds``) on ``profile`` at QLSA error ``eps``."""
    prof = _cost_model_profile(profile)
    classical = float(rec["predicted_classical_seconds"])
    quantum = _seconds(rec, eps, prof)
    gate_field = "gate_time_s" if prof.kind == "gate-count" else "t_2q_s"
    gate_now = float(getattr(prof, gate_field))

    def cheaper_at_gate(t: float) -> bool:
        return _seconds(rec, eps, _with_gate_time(prof, t)) <= classical

    lo, hi = GATE_TIME_RANGE
    gate: float | None = None
    if not cheaper_at_gate(lo):
        gate_note = (f"none: quantum is slower even at {lo:g} s gates (data loading or the "
                     "readout repetitions alone exceed the classical time)")
    elif cheaper_at_gate(hi):
        gate_note = f"quantum is cheaper at any gate time up to {hi:g} s"
    else:
        gate = _bisect_log(cheaper_at_gate, lo, hi)
        gate_note = f"{gate / gate_now:.3g}× the profile's {gate_field}"

    error_now: float | None = None
    error: float | None = None
    if prof.kind == "gate-count":
        error_note = "n/a: a gate-count profile has no error correction"
    else:
        error_now = float(prof.physical_error_rate)

        def cheaper_at_error(p: float) -> bool:
            return _seconds(rec, eps, dataclasses.replace(prof, physical_error_rate=p)) <= classical

        top = SURFACE_CODE_THRESHOLD * (1.0 - 1e-12)
        if not cheaper_at_error(ERROR_RATE_FLOOR):
            error_note = (f"none: quantum is slower even at p = {ERROR_RATE_FLOOR:g} "
                          "(code distance 3)")
        elif cheaper_at_error(top):
            error_note = "quantum is cheaper at any error rate below the threshold 0.01"
        else:
            error = _bisect_log(cheaper_at_error, ERROR_RATE_FLOOR, top)
            error_note = f"{error / error_now:.3g}× the profile's physical_error_rate"
    return BreakEven(
        block=str(rec.get("block", "?")), step=int(rec.get("step", -1)), n=int(rec["n"]),
        d=int(rec["d"]), kappa=float(rec["kappa"]), alpha=float(rec["alpha"]),
        classical_seconds=classical, quantum_seconds=quantum, gate_field=gate_field,
        gate_time_s=gate_now, break_even_gate_time_s=gate, gate_note=gate_note,
        error_rate=error_now, break_even_error_rate=error, error_note=error_note,
        model=prof.name)


def costed(rec: Mapping[str, Any]) -> bool:
    """Whether a solve record carries what :func:`break_even` needs."""
    keys = ("n", "d", "nnz", "kappa", "alpha", "qlsa", "readout", "predicted_classical_seconds")
    return all(rec.get(k) is not None for k in keys)


def run_profile(hardware: str, cfg: Mapping[str, Any]) -> HardwareProfile:
    """The run's hardware profile: the preset ``hardware`` with the run's ``gate_time`` override
    (the only profile override training takes). Unknown names raise ValueError listing the
    presets."""
    HARDWARE_PROFILES.check(hardware)
    gate = cfg.get("gate_time")
    return get_profile(hardware, gate_time_s=float(gate)) if gate is not None else \
        get_profile(hardware)


def block_break_evens(solves: list[Mapping[str, Any]], eps: float,
                      profile: HardwareProfile) -> list[BreakEven]:
    """:func:`break_even` of each block's last costed solve record, in order of first solve."""
    last: dict[str, Mapping[str, Any]] = {}
    for rec in solves:
        if costed(rec):
            last[str(rec.get("block", "?"))] = rec
    return [break_even(rec, eps, profile) for rec in last.values()]


def routed_classical(solves: list[Mapping[str, Any]]) -> tuple[float, int, int]:
    """``(seconds, counted, missing)``: Σ predicted classical seconds of the solves routed to
    the QLSA, how many had a prediction and how many did not."""
    seconds, counted, missing = 0.0, 0, 0
    for rec in solves:
        if rec.get("choice") != "quantum":
            continue
        v = rec.get("predicted_classical_seconds")
        if isinstance(v, int | float) and math.isfinite(v) and v >= 0:
            seconds += float(v)
            counted += 1
        else:
            missing += 1
    return seconds, counted, missing


def _shares_html(shares: PhaseShares, source: str, counted: int, missing: int) -> str:
    labels = {
        "solve": "classical solves (a free QLSA could remove them)",
        "emulation": "emulation of quantum solves (neither option spends it: not removable)",
        "overhead": "κ/α estimation and routing (only the quantum option needs them)",
        "curvature": "curvature (a QLSA cannot remove it)",
        "forward_backward": "forward/backward (a QLSA cannot remove it)",
        "other": "other: conditioning, update, communication (a QLSA cannot remove it)"}
    rows = [[labels[k], secs(shares.seconds[k]), f"{100 * shares.shares[k]:.1f}%"]
            for k in PARTS]
    parts = [f"<p>The {MEASURED} time by phase ({esc(source)}):</p>",
             table(["part", "seconds (measured)", "share of measured"], rows)]
    routed = (f"plus <b>{secs(shares.routed_classical_seconds)}</b> <i>predicted</i> for the "
              f"{counted} solves routed to the QLSA, solved classically instead"
              if counted else "no solve was routed to the QLSA")
    if missing:
        routed += f" ({missing} routed solves have no classical prediction and count as 0 s)"
    parts.append(
        f"<p>The classical option (the same run with every solve classical, and no κ/α "
        f"estimation or routing): measured − emulation − estimation/routing = "
        f"{secs(shares.classical_seconds - shares.routed_classical_seconds)}, {routed}: "
        f"{secs(shares.classical_seconds)} in all, of which solves "
        f"{secs(shares.removable_seconds)} (p = {shares.removable_share:.3f}).</p>")
    overhead = shares.seconds["overhead"]
    verdict = ("a slowdown: the overhead exceeds all the solve time it could save"
               if shares.net_max_speedup < 1 else "at most")
    parts.append(
        f"<p>Amdahl's bound: even a free, instantaneous QLSA speeds the classical option up "
        f"by at most 1/(1 − {shares.removable_share:.3f}) = "
        f"<b>{fmt(shares.amdahl_max_speedup)}×</b> if it needed nothing else. Charged the κ/α "
        f"estimation and routing it needs ({secs(overhead)}), the quantum option takes at best "
        f"{secs(shares.classical_seconds - shares.removable_seconds + overhead)}: "
        f"<b>{fmt(shares.net_max_speedup)}×</b> the classical option's speed ({verdict}).</p>")
    return "".join(parts)


def amdahl_html(run: RunData) -> str:
    """The report section: the measured time by what a QLSA could do about it, Amdahl's bound
    with and without the quantum option's own overhead, then per block the modeled break-even
    gate time and error rate. Says what it leaves out and why."""
    vals, source = run.final_values()
    parts: list[str] = []
    phases = vals.get("measured_by_phase")
    routed, counted, missing = routed_classical(run.solves)
    try:
        shares = phase_shares(phases, vals.get("emulation_seconds") or 0.0, routed) \
            if isinstance(phases, Mapping) else None
    except (ValueError, TypeError) as exc:
        shares = None
        parts.append(note(f"No phase shares: {exc}."))
    if shares is None and not parts:
        parts.append(note(f"No phase shares: {source} has no measured_by_phase."))
    if shares is not None:
        parts.append(_shares_html(shares, source, counted, missing))
    if not run.solves:
        parts.append(note("No solve records: no per-block break-even figures."))
        return "".join(parts)
    try:
        profile = run_profile(run.hardware, run.cfg)
        eps = float(run.cfg.get("eps") or 1e-2)
        evens = block_break_evens(run.solves, eps, profile)
    except ValueError as exc:
        parts.append(note(f"No per-block break-even figures: {exc}."))
        return "".join(parts)
    if not evens:
        parts.append(note("No solve record has κ, α and a classical prediction: no per-block "
                          "break-even figures."))
        return "".join(parts)
    done = {b.block for b in evens}
    left = {}
    for rec in run.solves:
        block = str(rec.get("block", "?"))
        if block not in done:
            left[block] = str(rec.get("quantum_rejection") or rec.get("kappa_method") or "")
    if left:
        parts.append(note("Left out (no solve record with κ, α and a classical prediction): "
                          + ", ".join(f"{b} ({why})" if why else b for b, why in left.items())
                          + "."))
    rows = []
    for b in evens:
        rows.append([f"{b.block} at step {b.step}", fmt(b.n), fmt(b.d), fmt(b.kappa), fmt(b.alpha),
                     secs(b.classical_seconds), secs(b.quantum_seconds),
                     fmt(b.break_even_gate_time_s) if b.break_even_gate_time_s else "—",
                     b.gate_note,
                     fmt(b.break_even_error_rate) if b.break_even_error_rate else "—",
                     b.error_note])
    first = evens[0]
    parts.append(
        f"<p>Per block (its last costed solve; profile {esc(first.model)}, ε = {fmt(eps)}): the "
        f"gate time ({esc(first.gate_field)}, at the profile's error rate) and the physical error "
        "rate (at the profile's gate time) at which the block's <i>modeled</i> quantum time "
        "equals its <i>predicted</i> classical time, by bisection on the cost model.</p>")
    parts.append(table(
        ["block (solve record)", "N", "d", "κ", "α", "classical seconds (predicted)",
         f"quantum seconds (modeled, {first.model})", "break-even gate time (s)", "vs profile",
         "break-even error rate", "vs profile"], rows))
    return "".join(parts)
