"""Pure helpers of the benchmark suite: repeated timing, summaries, power-law fits and regret.

No torch, no qnewton: every function here is checked against hand-computed values in
``tests/test_bench.py``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``{"min", "median", "max", "n"}`` of a non-empty list of numbers."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize needs at least one value")
    return {
        "min": min(vals),
        "median": statistics.median(vals),
        "max": max(vals),
        "n": len(vals),
    }


def time_repeats(
    fn: Callable[[], object], repeats: int, warmup: int = 1
) -> tuple[list[float], object]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns the list of wall-clock seconds and the last result.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    result = None
    for _ in range(max(0, warmup)):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of ``log y = p·log x + log c``; returns ``(p, c)`` for ``y ≈ c·x^p``."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("fit_exponent needs two equally long sequences of >= 2 points")
    lx = [math.log(float(x)) for x in xs]
    ly = [math.log(float(y)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    if sxx == 0:
        raise ValueError("fit_exponent needs at least two distinct x values")
    p = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sxx
    return p, math.exp(my - p * mx)


def regret(policy_costs: Sequence[float], oracle_costs: Sequence[float]) -> float:
    """``Σ policy / Σ oracle − 1``: the extra time of a policy over the oracle (0 = optimal)."""
    if len(policy_costs) != len(oracle_costs) or not policy_costs:
        raise ValueError("regret needs two equally long, non-empty sequences")
    total_oracle = float(sum(oracle_costs))
    if not total_oracle > 0:
        raise ValueError("the oracle's total cost must be > 0")
    return float(sum(policy_costs)) / total_oracle - 1.0


def policy_and_oracle(
    choice: str, classical_solver: str, measured: Mapping[str, float], quantum_true: float
) -> tuple[float, float]:
    """True cost of what a policy chose and of the oracle's choice for one solve.

    ``measured``: measured seconds of every classical solver run on the system; the oracle takes
    the cheapest of those and of ``quantum_true`` (modeled time with the exact κ and α).
    """
    best_classical = min(measured.values())
    oracle = min(best_classical, quantum_true)
    chosen = quantum_true if choice == "quantum" else measured[classical_solver]
    return chosen, oracle
