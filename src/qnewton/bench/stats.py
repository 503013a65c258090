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


def time_interleaved(
    fns: Sequence[Callable[[], object]], repeats: int, warmup: int = 1
) -> tuple[list[list[float]], list[object]]:
    """Time several functions in alternating rounds, so that all of them see the same load.

    Round ``r`` runs every function once, in the given order on even rounds and in reverse order
    on odd rounds (A B, B A, A B, ...: neither is always first after the other). ``warmup``
    rounds are untimed. Returns one list of ``repeats`` wall-clock seconds per function (index
    ``r`` of every list comes from the same round) and each function's last result.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not fns:
        raise ValueError("time_interleaved needs at least one function")
    results: list[object] = [None] * len(fns)
    times: list[list[float]] = [[] for _ in fns]
    for r in range(max(0, warmup) + repeats):
        order = range(len(fns)) if r % 2 == 0 else range(len(fns) - 1, -1, -1)
        for i in order:
            start = time.perf_counter()
            results[i] = fns[i]()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[i].append(elapsed)
    return times, results


def chunk_medians(values: Sequence[float], chunks: int) -> list[float]:
    """Medians of ``values`` split into ``chunks`` contiguous, nearly equal parts (the first
    parts one longer when the split is uneven), e.g. ``[1, 2, 3, 4, 5]`` in 2 → ``[2, 4.5]``."""
    if chunks < 1 or len(values) < chunks:
        raise ValueError(f"cannot split {len(values)} values into {chunks} non-empty chunks")
    size, extra = divmod(len(values), chunks)
    out, start = [], 0
    for k in range(chunks):
        stop = start + size + (1 if k < extra else 0)
        out.append(statistics.median(float(v) for v in values[start:stop]))
        start = stop
    return out


def verdict(
    met: bool, met_per_repeat: Sequence[bool], loads: Sequence[float | None], cores: int
) -> tuple[str, list[str]]:
    """``("met" | "missed" | "noisy", reasons)`` of one benchmark case.

    The rule (documented in ``qnewton.bench``): a case is decided only when the verdict of its
    headline figure (from medians) and the verdict of every single repeat's figure agree — for a
    one-sided target this says the target lies outside the range spanned by the repeats and the
    median — and the 1-minute load average stayed at or below ``cores`` (before and after the
    case). Otherwise it is ``"noisy"``, with the reasons.
    """
    reasons = []
    disagree = sum(1 for m in met_per_repeat if bool(m) != bool(met))
    if disagree:
        reasons.append(
            f"{disagree} of {len(met_per_repeat)} repeats {'miss' if met else 'meet'} the target "
            f"that the median {'meets' if met else 'misses'} (the target lies inside the spread)"
        )
    known = [x for x in loads if x is not None]
    if known and max(known) > cores:
        reasons.append(f"load average {max(known):.2f} above the {cores} cores")
    if reasons:
        return "noisy", reasons
    return ("met" if met else "missed"), []
