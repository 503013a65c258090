"""What a run records about the machine it ran on: threads, cores and load average.

Measured times are only comparable between runs on equally loaded machines with the same thread
count, so ``config.json`` records them at the start and ``summary.json`` at the end (with the
machine rates and their provenance, :class:`~qnewton.solvers.rates.RatesProvenance`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from qnewton.solvers.rates import now_iso

THREADS_HELP = ("torch CPU threads of each process (>= 1; default: torch's own choice); the "
                "machine rates are calibrated per thread count, and config.json / summary.json "
                "record it with the load average")


def machine_state() -> dict[str, Any]:
    """``threads`` (``torch.get_num_threads()``), ``cpus`` (``os.cpu_count()``),
    ``load_average`` (1, 5 and 15 minutes; ``None`` where the system has none) and ``at``
    (ISO-8601 time)."""
    try:
        load: list[float] | None = [round(float(v), 3) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_average": load,
            "at": now_iso()}


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` for a run, and NumPy/SciPy's BLAS (the κ estimators,
    scipy solvers) limited to as many threads (``None``: leave both at their defaults). A value
    below 1 raises ValueError naming ``threads``."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 (CPU threads for torch), got "
                         f"{threads!r}")
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)  # for the rest of the process, like torch's setting
