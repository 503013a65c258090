"""The headline of a run report: a few sentences on what happened, where the time went, and why
solves did or did not go quantum.

Every number comes from the run's files: the step count and times from ``summary.json`` (the last
``steps.jsonl`` row without one), the per-phase split from ``summary.json``'s
``measured_by_phase``, the routing from ``solves.jsonl``: each record's ``choice``, ``policy``,
``hardware``, and its ``predicted_quantum_seconds`` (modeled on the profile) against
``predicted_classical_seconds`` (the best allowed classical solver, predicted on this machine),
the two times the ``cost`` policy compares (docs/method.md §1). Measured and modeled seconds stay
in separate sentences.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from qnewton.reports.html import esc, fmt
from qnewton.reports.reading import RunData, finite, num, solved

#: How many phases the headline names; the rest are summed.
TOP_PHASES = 3


def fmt_ratio(r: float) -> str:
    """A ratio of two times for prose: ``×0.52``, ``×1.9``, ``×210``, ``×3.4e5``."""
    if math.isinf(r):
        return "×∞"
    if r >= 1e4:
        mant, exp = f"{r:.1e}".split("e")
        return f"×{mant}e{int(exp)}"
    if r >= 10:
        return f"×{r:.0f}"
    return f"×{r:.2g}"


def pct(part: float, whole: float) -> str:
    """A share for prose: ``46%``, ``<1%``."""
    if whole <= 0:
        return "—"
    share = 100 * part / whole
    return "<1%" if 0 < share < 0.5 else f"{share:.0f}%"


def secs(value: Any) -> str:
    """Seconds for prose, to three significant digits."""
    x = num(value)
    return "—" if x is None else f"{fmt(x, 3)} s"


@dataclass(frozen=True)
class Ratio:
    """Modeled quantum over predicted classical seconds of one solve."""

    value: float
    block: str
    step: int | None


def ratios(solves: list[dict[str, Any]]) -> list[Ratio]:
    """quantum/classical time ratios of the solves that recorded both (positive classical)."""
    out = []
    for s in solves:
        q, c = num(s.get("predicted_quantum_seconds")), num(s.get("predicted_classical_seconds"))
        if q is None or c is None or math.isnan(q) or math.isnan(c) or c <= 0 or q < 0:
            continue
        step = finite(s.get("step"))
        out.append(Ratio(q / c, str(s.get("block", "?")), None if step is None else int(step) + 1))
    return out


def _median_text(rs: list[Ratio]) -> str:
    return f"median ratio {fmt_ratio(statistics.median(r.value for r in rs))}"


def _closest(rs: list[Ratio]) -> str:
    """The solve whose two times were nearest each other (ratio nearest 1)."""
    best = min(rs, key=lambda r: abs(math.log(r.value)) if 0 < r.value < math.inf else math.inf)
    where = f"block {best.block}" + (f" at step {best.step}" if best.step is not None else "")
    return f"closest {fmt_ratio(best.value)}, {where}"


def _blocks(solves: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(str(s.get("block", "?")) for s in solves))
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"block{'s' if len(names) > 1 else ''} {shown}"


def _what_if(routed: list[dict[str, Any]], profile: str, side: str) -> str:
    """What the cost policy would have chosen for solves a fixed rule sent to ``side``."""
    rs = ratios(routed)
    if not rs:
        return ""
    agree = [r for r in rs if (r.value >= 1) == (side == "classical")]
    if len(agree) == len(rs):
        faster = "above" if side == "classical" else "below"
        return (f" The 'cost' policy would have chosen the same: the modeled quantum time on "
                f"'{profile}' was {faster} the best classical prediction for every one of them "
                f"({_median_text(rs)}; {_closest(rs)}).")
    other = "quantum" if side == "classical" else "classical"
    return (f" The 'cost' policy would have sent {len(rs) - len(agree)} of them {other} "
            f"(modeled quantum time on '{profile}' vs the best classical prediction: "
            f"{_median_text(rs)}).")


def routing_reason(solves: list[dict[str, Any]], kappa_threshold: float | None = None) -> str:
    """``"0 of 720 solves went quantum: ..."`` — how many solves went quantum and why (not)."""
    done = solved(solves)
    if not done:
        return "No Hessian solves were recorded."
    quantum = [s for s in done if s.get("choice") == "quantum"]
    classical = [s for s in done if s.get("choice") != "quantum"]
    policy = Counter(str(s.get("policy", "?")) for s in done).most_common(1)[0][0]
    profile = Counter(str(s.get("hardware", "?")) for s in done).most_common(1)[0][0]
    head = f"{len(quantum)} of {len(done)} solves went quantum"
    if policy == "cost":
        return head + _cost_reason(quantum, classical, profile)
    if policy == "threshold":
        return head + _threshold_reason(quantum, classical, profile, kappa_threshold)
    if policy == "classical":
        return (f"{head}: the 'classical' policy never routes to the QLSA; every block went to "
                f"the best classical solver.{_what_if(classical, profile, 'classical')}")
    if policy == "quantum":
        text = f"{head}: the 'quantum' policy sends every block to the QLSA"
        if classical:
            text += (f"; the {len(classical)} classical solve(s) are fallbacks after a failed "
                     "quantum solve")
        return text + f" (modeled on the '{profile}' profile)." + _what_if(
            quantum, profile, "quantum")
    return f"{head} (policy '{policy}', profile '{profile}')."


def _cost_reason(quantum: list[dict[str, Any]], classical: list[dict[str, Any]],
                 profile: str) -> str:
    rule = (f": the 'cost' policy picks the smaller of the modeled quantum time (profile "
            f"'{profile}') and the best classical prediction")
    rq, rc = ratios(quantum), ratios(classical)
    if not classical:
        return (rule + ", and the quantum time was below the classical one for every solve"
                + (f" ({_median_text(rq)})." if rq else "."))
    if not rc:
        return rule + "; the classical solves recorded no predicted times to compare."
    above = [r for r in rc if r.value >= 1]
    if not quantum:
        if len(above) == len(classical):
            return (f": on the '{profile}' profile the modeled quantum time was above the best "
                    f"classical prediction for every solve ({_median_text(rc)}; "
                    f"{_closest(rc)}).")
        return (f": on the '{profile}' profile the modeled quantum time was above the best "
                f"classical prediction for {len(above)} of the {len(classical)} solves "
                f"({_median_text(above or rc)}); the other {len(classical) - len(above)} went "
                "classical although quantum was predicted faster (fallbacks after a failed "
                "quantum solve).")
    text = (f" ({_blocks(quantum)}){rule}: quantum was predicted faster for those"
            + (f" ({_median_text(rq)})" if rq else ""))
    text += (f", slower for the other {len(classical)} ({_median_text(above or rc)}; "
             f"{_closest(above or rc)}).")
    return text


def _threshold_reason(quantum: list[dict[str, Any]], classical: list[dict[str, Any]],
                      profile: str, threshold: float | None) -> str:
    limit = fmt(threshold) if threshold is not None else "its threshold"
    rule = f": the 'threshold' policy sends a block classical when its κ estimate exceeds {limit}"
    kappas = [k for k in (num(s.get("kappa")) for s in classical) if k is not None]
    if not classical:
        return rule + ", and no block's did."
    text = rule + f"; {len(classical)} solve(s) did"
    if kappas:
        text += f" (median κ {fmt(statistics.median(kappas), 2)})"
    return text + "." + _what_if(classical, profile, "classical")


def _phases(vals: dict[str, Any], measured: float) -> str:
    phases = vals.get("measured_by_phase")
    if not isinstance(phases, dict) or not phases:
        return ""
    items = sorted(((str(p), finite(v) or 0.0) for p, v in phases.items()), key=lambda kv: -kv[1])
    outside = measured - sum(v for _, v in items)
    if outside > 0.005 * measured:
        items.append(("outside the phases", outside))
        items.sort(key=lambda kv: -kv[1])
    top, rest = items[:TOP_PHASES], items[TOP_PHASES:]
    text = ", ".join(f"{p} {secs(v)} ({pct(v, measured)})" for p, v in top)
    if rest:
        other = sum(v for _, v in rest)
        text += f"; the other {len(rest)} phases {secs(other)} ({pct(other, measured)})"
    return text


def time_sentence(run: RunData) -> str:
    """Where the measured time went, by phase, with shares."""
    vals, source = run.final_values()
    measured = finite(vals.get("measured_seconds"))
    steps = vals.get("steps")
    if measured is None:
        return "No measured time was recorded."
    text = (f"Measured time (wall clock, this machine): {secs(measured)} over {fmt(steps)} "
            "steps")
    split = _phases(vals, measured)
    if split:
        text += f" — {split}."
    else:
        text += f" (no per-phase split: the figures come from {source})."
    emul = finite(vals.get("emulation_seconds")) or 0.0
    if emul > 0:
        text += (f" Of it, {secs(emul)} ({pct(emul, measured)}) went to emulating quantum solves "
                 "on this machine, which the total replaces by their modeled time.")
    return text


def modeled_sentence(run: RunData) -> str:
    """The modeled quantum seconds, labelled with the profile, and the total."""
    vals, _ = run.final_values()
    modeled = finite(vals.get("modeled_quantum_seconds")) or 0.0
    total = finite(vals.get("total_seconds"))
    measured = finite(vals.get("measured_seconds"))
    counted = finite(vals.get("quantum_solves"))
    n_quantum = int(counted) if counted is not None else sum(
        1 for s in solved(run.solves) if s.get("choice") == "quantum")
    n_all = n_quantum + int(finite(vals.get("classical_solves")) or 0)
    if not run.solves and n_all == 0 and "solves.jsonl" not in run.unreadable_files:
        return (f"No Hessian solves (optimizer {run.optimizer}), so nothing is modeled: total "
                f"= measured = {secs(total if total is not None else measured)}.")
    by_profile = vals.get("modeled_by_profile")
    where = (", ".join(f"'{k}' {secs(v)}" for k, v in by_profile.items())
             if isinstance(by_profile, dict) and len(by_profile) > 1
             else f"'{run.hardware_label}'")
    if modeled == 0 and n_quantum == 0:
        return (f"Modeled quantum time (cost model on the {where} profile, not wall clock): "
                f"0 s, since no solve went quantum; total = measured − emulation + modeled = "
                f"{secs(total)}.")
    return (f"Modeled quantum time (cost model on the {where} profile, not wall clock): "
            f"{secs(modeled)} for {n_quantum} quantum solve(s); total = measured − emulation + "
            f"modeled = {secs(total)}, against {secs(measured)} measured.")


def metric_sentence(run: RunData) -> str:
    """The run's status (when not completed) and its test metric before and after training:
    the final value from summary.json (steps.jsonl's last evaluation without one)."""
    vals, source = run.final_values()
    status = vals.get("status")
    text = ""
    if status is not None and str(status) != "completed":
        text = f"The run did not complete (status: {status}). "
    metric = run.metric
    evals = run.evaluations()
    key = f"test_{metric}" if metric else ""
    final = finite(vals.get(key)) if metric else None
    if final is None and evals:
        final = finite(evals[-1][key])
    if final is None:
        return text + "No test evaluation was recorded."
    at = vals.get("metric_at_step", vals.get("steps"))
    start = evals[0] if evals and finite(evals[0]["step"]) == 0 else None
    if start is None:
        return text + f"Test {metric} {fmt(final, 3)} after {fmt(at)} steps (from {source})."
    return text + (f"Test {metric} went from {fmt(finite(start[key]), 3)} before training to "
                   f"{fmt(final, 3)} after {fmt(at)} steps.")


def kappa_threshold(run: RunData) -> float | None:
    return finite(run.cfg.get("kappa_threshold"))


def run_headline(run: RunData) -> list[str]:
    """The headline's sentences, in order: outcome, measured time, modeled time, routing."""
    out = [metric_sentence(run), time_sentence(run), modeled_sentence(run)]
    if run.solves:
        out.append(routing_reason(run.solves, kappa_threshold(run)))
    elif "solves.jsonl" in run.unreadable_files:
        out.append("Routing unknown: solves.jsonl is unreadable (see the warnings).")
    return out


def headline_html(sentences: list[str]) -> str:
    return "<div class='headline'>" + "".join(f"<p>{esc(s)}</p>" for s in sentences) + "</div>"
