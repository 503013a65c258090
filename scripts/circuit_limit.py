"""Measure the circuit QLSA backend's size limit (docs/method.md §4.11, ``CIRCUIT_MAX_N``).

Times one circuit solve at degree ≈ 200 (κ_eff = 16, ε = 1e-2) for growing N: a regularized
Fisher block of M = N/2 rows, shifted so that κ_eff ≈ 15; one warm-up solve (phases cached), then
``REPEATS`` timed solves without the classical reference solve. Wall-clock seconds, measured; run
with one thread and give the load average with the numbers:

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/circuit_limit.py; uptime
"""

from __future__ import annotations

import statistics
import time

import torch

from qnewton.curvature import FactorBlock
from qnewton.quantum.backends import QLSA_BACKENDS
from qnewton.quantum.backends.inversion import spectral_bounds
from qnewton.system import LinearSystem

SIZES = (64, 128, 256)
REPEATS = 5


def main() -> None:
    circuit = QLSA_BACKENDS["circuit"]
    circuit.max_n = max(SIZES)  # measure past the limit (this process only)
    for n in SIZES:
        g = torch.Generator().manual_seed(n)
        block = FactorBlock("w", "fisher", torch.randn(n // 2, n, generator=g,
                                                       dtype=torch.float64), scale=2.0 / n)
        probe = LinearSystem(block=block, shift=1.0, reg=1.0, d=n, nnz=n * n)
        shift = (spectral_bounds(probe).alpha - 1.0) / 14  # κ_eff = (G + shift)/shift ≈ 15
        system = LinearSystem(block=block, shift=shift, reg=shift, d=n, nnz=n * n)
        b = torch.randn(n, dtype=torch.float64, generator=g)
        circuit.solve(system, b, eps=1e-2)
        seconds = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            out = circuit.solve(system, b, eps=1e-2).qlsa
            seconds.append(time.perf_counter() - start - out["reference_seconds"])
        print(f"N={n} degree={out['degree']} kappa_eff={out['kappa_eff']:.1f} seconds "
              f"median={statistics.median(seconds):.3f} min={min(seconds):.3f} "
              f"max={max(seconds):.3f}", flush=True)


if __name__ == "__main__":
    main()
