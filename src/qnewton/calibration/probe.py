"""The calibration probe: this machine's rates from short, repeated measurements.

A fp64 Cholesky factor + solve and a GEMM at N = 1200, a matvec over a 64 MiB matrix, and
qnewton's own solvers on an 8×8 system for the fixed per-call and per-iteration overheads
(docs/method.md §4.5). The probe runs in interleaved rounds and keeps each rate's **fastest**
time: on a shared machine, interference only ever adds time, so the minimum is the estimator
least biased by it, and interleaving keeps one burst of load from covering every repeat of one
rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from qnewton.curvature.representation import DenseBlock
from qnewton.solvers import SOLVERS
from qnewton.system import LinearSystem

#: Size of the dense probes (Cholesky, GEMM): large enough to run at the BLAS's full rate.
DENSE_N = 1200
#: Side of the matvec probe's matrix: 2896² fp64 values = 64 MiB, beyond any CPU cache.
MATVEC_N = 2896
#: Side of the overhead probe's system: small enough that only the fixed costs remain.
OVERHEAD_N = 8


@dataclass(frozen=True)
class ProbeTimes:
    """The fastest seconds seen per probe (over all rounds).

    Attributes:
        gemm_s: one DENSE_N² fp64 GEMM.
        cholesky_s: one DENSE_N² Cholesky factor + one-column solve.
        matvec_s: one MATVEC_N² fp64 matvec.
        call_s: one qnewton Cholesky solve of the OVERHEAD_N² system.
        cg_s: one qnewton CG solve of the same system, ``cg_iterations`` iterations.
        cg_iterations: CG's iteration count on it.
        rounds: rounds measured.
    """

    gemm_s: float
    cholesky_s: float
    matvec_s: float
    call_s: float
    cg_s: float
    cg_iterations: int
    rounds: int


def _seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fewest wall-clock seconds of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return max(best, 1e-9)


def measure(rounds: int) -> ProbeTimes:
    """One warm-up call of every probe, then ``rounds`` interleaved rounds (≈0.1 s a round on one
    core here). The operands' values do not change the times, so they are cheap to make: a
    diagonally dominant symmetric matrix is SPD without a GEMM, and the matvec reads ones."""
    gen = torch.Generator().manual_seed(0)
    n = DENSE_N
    m = torch.rand(n, n, dtype=torch.float64, generator=gen)
    # entries in [0, 2] off the diagonal, ≥ 2n on it: strictly diagonally dominant, so SPD
    spd = m + m.T + 2.0 * n * torch.eye(n, dtype=torch.float64)
    rhs = torch.ones(n, 1, dtype=torch.float64)
    big = torch.ones(MATVEC_N, MATVEC_N, dtype=torch.float64)
    vec = torch.ones(MATVEC_N, dtype=torch.float64)
    a = torch.diag(torch.linspace(1.0, 100.0, OVERHEAD_N, dtype=torch.float64))
    system = LinearSystem(DenseBlock("probe", "hessian", a), shift=0.0, reg=0.0, dense=a,
                          d=OVERHEAD_N, nnz=OVERHEAD_N * OVERHEAD_N)
    b = torch.ones(OVERHEAD_N, dtype=torch.float64)
    cholesky, cg = SOLVERS["cholesky"], SOLVERS["cg"]
    iterations = cg.solve(system, b).iterations or 1

    def chol_solve() -> torch.Tensor:
        return torch.cholesky_solve(rhs, torch.linalg.cholesky(spd))

    probes = {  # name: (call, timed calls per round)
        "gemm": (lambda: m @ m, 1),
        "chol": (chol_solve, 1),
        "mv": (lambda: big @ vec, 2),
        # the minimum of many: a tiny multi-threaded LAPACK call can wait a whole scheduler
        # slice for its second thread
        "call": (lambda: cholesky.solve(system, b), 9),
        "cg": (lambda: cg.solve(system, b), 5),
    }
    for fn, _ in probes.values():
        fn()  # warm-up: first-call allocations and library initialization
    best = dict.fromkeys(probes, float("inf"))
    for _ in range(rounds):
        for name, (fn, repeats) in probes.items():
            best[name] = min(best[name], _seconds(fn, repeats))
    return ProbeTimes(gemm_s=best["gemm"], cholesky_s=best["chol"], matvec_s=best["mv"],
                      call_s=best["call"], cg_s=best["cg"], cg_iterations=int(iterations),
                      rounds=rounds)


def rates_fields(times: ProbeTimes) -> dict[str, float]:
    """The MachineRates numbers of probe times: ``dense_flops_per_s`` = (N³/3 + 2N²)/t of the
    Cholesky probe, ``gemm_flops_per_s`` = 2N³/t, ``bandwidth_bytes_per_s`` = bytes touched by
    the matvec / t, ``call_overhead_s`` = the tiny Cholesky solve, ``iteration_overhead_s`` =
    (tiny CG − tiny Cholesky) / CG iterations (≥ 0)."""
    n, nb = DENSE_N, MATVEC_N
    return {
        "dense_flops_per_s": SOLVERS["cholesky"].flops(n) / times.cholesky_s,
        "gemm_flops_per_s": 2.0 * n**3 / times.gemm_s,
        "bandwidth_bytes_per_s": (8.0 * nb * nb + 16.0 * nb) / times.matvec_s,
        "call_overhead_s": times.call_s,
        "iteration_overhead_s": max(0.0, (times.cg_s - times.call_s) / times.cg_iterations),
    }
