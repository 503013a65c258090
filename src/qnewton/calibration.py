"""Calibration: this machine's rates for the classical time models, from a short probe, cached.

Classical predictions are only as good as their rates, so they are measured on the running
machine (docs/method.md §4.5), never hard-coded: a fp64 Cholesky factor + solve and a GEMM at
N = 1200, a matvec over a 64 MiB matrix, and qnewton's own solvers on an 8×8 system for the fixed
per-call and per-iteration overheads. The result is cached per (host, torch version, threads).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from qnewton.curvature.representation import DenseBlock
from qnewton.solvers import SOLVERS
from qnewton.solvers.rates import MachineRates, now_iso
from qnewton.system import LinearSystem


def default_cache_dir() -> Path:
    """``$QNEWTON_CACHE_DIR`` if set, else ``~/.cache/qnewton``."""
    env = os.environ.get("QNEWTON_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "qnewton"


def _cache_key() -> tuple[str, str, int]:
    return platform.node() or "unknown-host", str(torch.__version__), torch.get_num_threads()


def _cache_path(cache_dir: Path, host: str, version: str, threads: int) -> Path:
    # v2: the rates carry call/iteration overheads; older cache files are not re-used.
    raw = f"rates-v2-{host}-torch{version}-t{threads}"
    return cache_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", raw) + ".json")


def _repeat_times(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    return max(statistics.median(_repeat_times(fn, repeats)), 1e-9)


def _probe_dense(n: int, gen: Any) -> tuple[float, float]:
    """Median seconds of an n×n fp64 GEMM and of an n×n Cholesky factor + solve."""
    m = torch.randn(n, n, dtype=torch.float64, generator=gen)
    gemm_s = _median_time(lambda: m @ m, 5)
    spd = (m @ m.T) / n + torch.eye(n, dtype=torch.float64)
    rhs = torch.randn(n, 1, dtype=torch.float64, generator=gen)

    def chol_solve() -> torch.Tensor:
        return torch.cholesky_solve(rhs, torch.linalg.cholesky(spd))

    return gemm_s, _median_time(chol_solve, 5)


def _probe_matvec(nb: int, gen: Any) -> float:
    """Median seconds of a fp64 matvec over an nb×nb matrix (the memory traffic of CG)."""
    big = torch.randn(nb, nb, dtype=torch.float64, generator=gen)
    v = torch.randn(nb, dtype=torch.float64, generator=gen)
    return _median_time(lambda: big @ v, 7)


def _probe_overheads() -> tuple[float, float]:
    """Seconds of one qnewton solver call on an 8×8 system, and per extra CG iteration."""
    n = 8
    a = torch.diag(torch.linspace(1.0, 100.0, n, dtype=torch.float64))
    system = LinearSystem(DenseBlock("probe", "hessian", a), shift=0.0, reg=0.0, dense=a, d=n,
                          nnz=n * n)
    b = torch.ones(n, dtype=torch.float64)
    cholesky, cg = SOLVERS["cholesky"], SOLVERS["cg"]
    # The minimum, not the median: on a busy machine a tiny multi-threaded LAPACK call can wait a
    # whole scheduler slice for its second thread, and such outliers must not be cached.
    call = _min_time(lambda: cholesky.solve(system, b), 21)
    iterations = cg.solve(system, b).iterations or 1
    cg_time = _min_time(lambda: cg.solve(system, b), 11)
    return call, max(0.0, (cg_time - call) / iterations)


def _min_time(fn: Callable[[], object], repeats: int) -> float:
    return max(min(_repeat_times(fn, repeats)), 1e-9)


def _probe(host: str, version: str, threads: int) -> MachineRates:
    """Measure the dense, GEMM and bandwidth rates and the call overheads (≈0.3–1 s)."""
    gen = torch.Generator().manual_seed(0)
    n = 1200
    gemm_s, chol_s = _probe_dense(n, gen)
    nb = 2896
    mv_s = _probe_matvec(nb, gen)
    call_s, iteration_s = _probe_overheads()
    return MachineRates(
        call_overhead_s=call_s,
        iteration_overhead_s=iteration_s,
        dense_flops_per_s=SOLVERS["cholesky"].flops(n) / chol_s,
        gemm_flops_per_s=2.0 * n**3 / gemm_s,
        bandwidth_bytes_per_s=(8.0 * nb * nb + 16.0 * nb) / mv_s,
        source="calibrated",
        host=host,
        torch_version=version,
        threads=threads,
        measured_at=now_iso(),
    )


def machine_busy() -> bool:
    """Whether the 1-minute load average exceeds the number of cores (``False`` where the
    operating system gives no load average)."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return False


def calibrate(cache_dir: str | Path | None = None, force: bool = False) -> MachineRates:
    """Rates of THIS machine from a short probe, cached as JSON.

    Probe (median of a few repeats after one warm-up, ≈1 s or less): a float64 Cholesky
    factorization + ``cholesky_solve`` at N = 1200 gives ``dense_flops_per_s`` = (N³/3 + 2N²)/t;
    a 1200×1200 GEMM gives ``gemm_flops_per_s`` = 2N³/t; a fp64 matvec over a 2896×2896 matrix
    (64 MiB) gives ``bandwidth_bytes_per_s`` = bytes touched / t; qnewton's own Cholesky and CG
    solvers on an 8×8 system give ``call_overhead_s`` and ``iteration_overhead_s``.

    Cache: one file per (host name, torch version, ``torch.get_num_threads()``) in ``cache_dir``
    (default :func:`default_cache_dir`). A valid matching file is returned with
    ``source="cache"``; ``force=True`` re-measures. A missing, corrupt or mismatching file is
    replaced by a fresh measurement; a cache that cannot be written is ignored (never raises).
    A measurement taken while the machine is busy (:func:`machine_busy`) is used by this process
    but not cached, with a warning: rates measured under load (seen here: a 100× call overhead)
    would otherwise bias every later routing decision on this machine.
    """
    host, version, threads = _cache_key()
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = _cache_path(directory, host, version, threads)
    if not force:
        try:
            cached = MachineRates.from_dict(json.loads(path.read_text(encoding="utf-8")))
            if (cached.host, cached.torch_version, cached.threads) == (host, version, threads):
                return dataclasses.replace(cached, source="cache")
        except (OSError, ValueError, TypeError):  # missing or corrupt: measure again
            pass
    busy_before = machine_busy()
    rates = _probe(host, version, threads)
    if busy_before or machine_busy():
        warnings.warn(
            "qnewton calibrated this machine's rates while it was busy (load average above "
            f"its {os.cpu_count()} cores); they are used for this run but not cached",
            RuntimeWarning, stacklevel=2)
        return rates
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(rates.to_dict(), indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return rates
