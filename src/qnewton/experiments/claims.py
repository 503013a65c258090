"""``reproduce``: the experiments behind the paper's claims, and a verdict for each."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from qnewton.experiments.compare import compare
from qnewton.experiments.runs import fmt, time_to_target
from qnewton.files import read_jsonl, write_json_atomic
from qnewton.training import TrainConfig

REPRODUCE_PROFILES = (
    # (label, hardware profile, gate time override): the paper's profile at its default 1 ns
    # gates, at the paper's attosecond hypothesis, and a realistic fault-tolerant machine.
    ("paper", "paper", None),
    ("paper-attosecond", "paper", 1e-18),
    ("surface-code", "surface-code", None),
)


def reproduce(out: str | Path, *, quick: bool = False, tiny: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Run the experiments behind the paper's claims and write ``claims.json`` / ``claims.md``.

    Claims (v3 abstract): (1) up to 90% less training time than classical Newton at equal
    accuracy; (2) systems with κ > 1e4 are routed classically; (3) κ falls ~1000× during
    training; (4) faster than SGD to equal accuracy. Each is evaluated on digits under the
    ``paper`` profile (1 ns gates, and the paper's attosecond hypothesis) and under the realistic
    ``surface-code`` profile, against the best classical Newton (Cholesky, CG, Woodbury) and
    against the release's explicit-inverse Newton. ``quick`` shortens the runs; ``tiny`` (tests)
    uses the tiny digits configuration.
    """
    out = Path(out)
    base = TrainConfig(task="digits", epochs=3 if quick else 10, tiny=tiny,
                       max_steps=3 if tiny else None, exact_kappa_max_n=300)
    optimizers = ["sgd", "adam", "newton", "newton-inverse", "qnewton"]
    comparisons = {}
    for label, profile, gate_time in REPRODUCE_PROFILES:
        config = dataclasses.replace(base, gate_time=gate_time)
        comparisons[label] = compare(config, optimizers, [profile], out / f"compare-{label}",
                                     progress=progress)
    # Newton-vs-Newton claims are timed to an accuracy every Newton-family run reached.
    first = comparisons[REPRODUCE_PROFILES[0][0]]
    target = min(r["final_metric"] for c in comparisons.values() for r in c["rows"]
                 if r["optimizer"] in ("newton", "newton-inverse", "qnewton"))
    claims: list[dict[str, Any]] = []
    for label, comp in comparisons.items():
        rows = {r["optimizer"]: r for r in comp["rows"]}
        claims += time_claims(label, out / f"compare-{label}", rows, comp["metric"], target)
        claims.append(kappa_routing_claim(label, out / f"compare-{label}", rows["qnewton"]))
    claims.append(kappa_decay_claim(out / f"compare-{REPRODUCE_PROFILES[0][0]}", first))
    result = {"claims": claims, "target_accuracy": target, "quick": quick,
              "comparisons": [f"compare-{label}" for label in comparisons], "sweeps": []}
    write_json_atomic(out / "claims.json", result)
    (out / "claims.md").write_text(claims_markdown(claims), encoding="utf-8")
    return result


def _with_target(base: Path, row: dict[str, Any], metric: str, target: float) -> dict[str, Any]:
    steps = read_jsonl(base / row["run_dir"] / "steps.jsonl")
    return dict(row, time_to_target_total=time_to_target(steps, metric, target, "total_seconds"),
                time_to_target_measured=time_to_target(steps, metric, target,
                                                       "measured_seconds"))


def _change(red: float) -> str:
    return (f"{100 * red:.1f}% less total time" if red >= 0
            else f"{-100 * red:.1f}% more total time")


def _reduction(ours: float | None, reference: float | None) -> float | None:
    if ours is None or reference is None or reference <= 0:
        return None
    return 1.0 - ours / reference


# Differences in measured time below this share are within the run-to-run noise seen here.
TIMING_NOISE = 0.1


def time_claims(profile: str, base: Path, rows: dict[str, dict[str, Any]], metric: str,
                 newton_target: float) -> list[dict]:
    """The time claims, with the reason for any difference spelled out.

    A reduction only counts for the quantum claim if qnewton actually routed systems to the
    QLSA: with zero quantum solves qnewton *is* classical Newton and any difference is timing
    noise; against the release's explicit inverse a reduction without quantum solves comes from
    the classical solver choice (Woodbury/Cholesky instead of ``torch.inverse``).
    """
    q_row = rows["qnewton"]
    q_solves = q_row["quantum_solves"]
    q_time = _with_target(base, q_row, metric, newton_target)["time_to_target_total"]
    claims = []
    for ref_name, label in (("newton", "best classical Newton"),
                            ("newton-inverse", "explicit-inverse Newton (release)")):
        ref_time = _with_target(base, rows[ref_name], metric,
                                newton_target)["time_to_target_total"]
        red = _reduction(q_time, ref_time)
        if red is None:
            verdict, ours = "n/a", "n/a (accuracy target not reached)"
        elif q_solves == 0:
            ours = f"{_change(red)}, with 0 quantum solves"
            verdict = "not supported" if ref_name == "newton" or red < TIMING_NOISE else "partly"
        else:
            ours = f"{_change(red)} ({q_solves} quantum solves)"
            verdict = ("supported" if red >= 0.5 else "partly" if red > TIMING_NOISE
                       else "not supported")
        why = ""
        if red is not None and q_solves == 0:
            why = ("; qnewton routed nothing to quantum, so it ran the same classical solves: "
                   + ("the difference is timing noise" if ref_name == "newton" else
                      "the whole gain is Woodbury/Cholesky replacing the explicit inverse"))
        claims.append({
            "claim": f"Up to 90% less training time than classical Newton ({label})",
            "paper": "≤ 90% reduction",
            "profile": profile,
            "ours": ours,
            "verdict": verdict,
            "details": f"total seconds to test {metric} {newton_target:.4f}: qnewton "
                       f"{fmt(q_time)}, {ref_name} {fmt(ref_time)}{why}",
        })
    sgd_row = rows["sgd"]
    # Equal accuracy: the level SGD itself reached (qnewton is timed to the same level).
    level = sgd_row["final_metric"]
    sgd_time = _with_target(base, sgd_row, metric, level)["time_to_target_total"]
    q_at_level = _with_target(base, q_row, metric, level)["time_to_target_total"]
    red = _reduction(q_at_level, sgd_time)
    claims.append({
        "claim": "Faster than SGD to equal accuracy",
        "paper": "faster",
        "profile": profile,
        "ours": "n/a" if red is None else f"{_change(red)} than SGD",
        "verdict": "n/a" if red is None else "supported" if red > TIMING_NOISE
        else "not supported",
        "details": f"total seconds to SGD's final test {metric} {level:.4f}: qnewton "
                   f"{fmt(q_at_level)}, sgd {fmt(sgd_time)} ({q_solves} quantum solves)",
    })
    return claims


def kappa_routing_claim(profile: str, base: Path, row: dict[str, Any]) -> dict[str, Any]:
    solves = read_jsonl(base / row["run_dir"] / "solves.jsonl")
    high = [s for s in solves if float(s["kappa"]) > 1e4]
    high_classical = sum(s["choice"] == "classical" for s in high)
    low = [s for s in solves if float(s["kappa"]) <= 1e4]
    low_quantum = sum(s["choice"] == "quantum" for s in low)
    if not high:
        verdict, ours = "n/a", "no system had estimated κ > 1e4"
    else:
        share = high_classical / len(high)
        verdict = "supported" if share == 1 else "partly" if share > 0 else "not supported"
        ours = f"{high_classical}/{len(high)} systems with κ > 1e4 routed classically"
    return {
        "claim": "Systems with κ > 1e4 are routed classically (cost policy)",
        "paper": "κ > 1e4 → classical",
        "profile": profile,
        "ours": ours,
        "verdict": verdict,
        "details": f"{low_quantum}/{len(low)} systems with κ ≤ 1e4 went quantum",
    }


def kappa_decay_claim(base: Path, comp: dict[str, Any]) -> dict[str, Any]:
    row = next(r for r in comp["rows"] if r["optimizer"] == "qnewton")
    solves = read_jsonl(base / row["run_dir"] / "solves.jsonl")
    ratios = []
    by_block: dict[str, list[dict[str, Any]]] = {}
    for s in solves:
        if s.get("kappa_exact") is not None:
            by_block.setdefault(s["block"], []).append(s)
    for items in by_block.values():
        first, last = float(items[0]["kappa_exact"]), float(items[-1]["kappa_exact"])
        if last > 0 and math.isfinite(first) and math.isfinite(last):
            ratios.append(first / last)
    if not ratios:
        return {"claim": "κ falls ~1000× during training", "paper": "~1000×", "profile": "any",
                "ours": "no exact κ recorded", "verdict": "n/a", "details": ""}
    best = max(ratios)
    return {
        "claim": "κ falls ~1000× during training",
        "paper": "~1000×",
        "profile": "any (κ does not depend on the profile)",
        "ours": f"largest first/last exact-κ ratio over blocks: {best:.3g}×",
        "verdict": "supported" if best >= 300 else "partly" if best >= 10 else "not supported",
        "details": "per block first/last exact κ of the regularized system: "
                   + ", ".join(f"{r:.3g}" for r in ratios),
    }


def claims_markdown(claims: list[dict[str, Any]]) -> str:
    lines = ["| claim | paper | profile | ours | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {c['claim']} | {c['paper']} | {c['profile']} | {c['ours']} | {c['verdict']} |"
              for c in claims]
    return "\n".join(lines) + "\n"


