"""Case ``dense-solve-efficiency``: GFLOP/s of our Cholesky solve against a GEMM at the same N.

Cholesky is the fair dense direct baseline (docs/method.md §4.5); a well-implemented one should
run at a good fraction of the machine's matrix-multiply rate. Both are timed interleaved, so
they see the same load on a shared machine.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from qnewton.bench.settings import Settings
from qnewton.bench.stats import summarize
from qnewton.curvature import DenseBlock
from qnewton.solvers import SOLVERS, MachineRates
from qnewton.system import LinearSystem


def case_dense_solve(s: Settings, rates: MachineRates, seed: int) -> dict[str, Any]:
    """Worst fraction of GEMM GFLOP/s reached by the Cholesky factor + solve at N >= 2000."""
    cholesky = SOLVERS["cholesky"]
    gen = torch.Generator().manual_seed(seed)
    rows = []
    per_round: dict[int, list[float]] = {}
    timings: dict[str, Any] = {}
    for n in s.dense_sizes:
        m = torch.randn(n, n, generator=gen, dtype=torch.float64)
        a = m @ m.T / n
        a.diagonal().add_(1.0)
        b = torch.randn(n, generator=gen, dtype=torch.float64)
        block = DenseBlock("bench", "hessian", a)
        system = LinearSystem(block=block, shift=0.0, reg=0.0, dense=a, d=n, nnz=n * n)
        gemm_t, chol_t = [], []
        for r in range(s.warmup + s.repeats):  # interleaved, so both see the same machine load
            if r % 2:  # alternate which one goes first
                c = cholesky.solve(system, b).seconds
            t0 = time.perf_counter()
            _ = m @ m
            g = time.perf_counter() - t0
            if not r % 2:
                c = cholesky.solve(system, b).seconds
            if r >= s.warmup:
                gemm_t.append(g)
                chol_t.append(c)
        flops_c = cholesky.flops(n)
        gf_c = flops_c / statistics.median(chol_t) / 1e9
        gf_g = 2 * n**3 / statistics.median(gemm_t) / 1e9
        ratios = [(flops_c / c) / (2 * n**3 / g) for c, g in zip(chol_t, gemm_t, strict=True)]
        per_round[n] = ratios
        rows.append({
            "n": n,
            "cholesky_gflops": gf_c,
            "gemm_gflops": gf_g,
            "fraction_of_gemm": gf_c / gf_g,
            "fraction_per_repeat": summarize(ratios),
            "cholesky_seconds": summarize(chol_t),
            "gemm_seconds": summarize(gemm_t),
        })
        timings[f"cholesky_seconds_n{n}"] = chol_t
        timings[f"gemm_seconds_n{n}"] = gemm_t
    judged = [r for r in rows if r["n"] >= 2000] or rows
    worst = min(r["fraction_of_gemm"] for r in judged)
    # Round r's figure: the worst judged size in that round (same rule as the headline).
    worst_per_round = [min(per_round[r["n"]][i] for r in judged) for i in range(s.repeats)]
    out = {
        "name": "dense-solve-efficiency",
        "measured": worst,
        "unit": "fraction of GEMM GFLOP/s (worst N >= 2000)",
        "baseline": "fp64 GEMM GFLOP/s at the same N (2N³ flops), measured interleaved",
        "target": ">= 0.5 at N >= 2000 (Cholesky factor + solve, N³/3 + 2N² flops)",
        "met": worst >= 0.5,
        "per_repeat": {
            "measured": worst_per_round, "met": [w >= 0.5 for w in worst_per_round],
            "what": "worst judged size's fraction in each interleaved round",
        },
        "timings": timings,
        "sizes": rows,
    }
    if worst < 0.5:
        out["note"] = (
            "Cholesky (LAPACK potrf via torch/MKL) is a blocked algorithm whose panel "
            "factorizations and triangular solves run below GEMM speed; both timings are "
            "interleaved on a shared machine, see sizes[].fraction_per_repeat"
        )
    return out
