"""The benchmark cases by name: :data:`BENCH_CASES`, the one place a case is registered.

A case is a function ``(settings, rates, seed) -> entry`` where ``entry`` is a dict with at least
:data:`REQUIRED_KEYS` and ``entry["name"]`` its registered name, or a list of such entries when
several are measured together. A case times its baseline and its own code in alternating rounds
(:func:`~qnewton.bench.stats.time_interleaved`) and reports each round's figure in
``per_repeat``. Names that share one function (``scheduler-quality`` and
``scheduler-overhead``) are each runnable alone; when both are selected the suite runs the
function once and keeps both entries.

Adding a case: write ``qnewton/bench/<case>.py`` with ``case_<case>(s, rates, seed)``, add the
sizes it needs to :class:`~qnewton.bench.settings.Settings` (one value per mode), and register it
below; the suite, ``--cases`` and the tests pick it up from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qnewton.bench.dense_solve import case_dense_solve
from qnewton.bench.distributed_step import case_distributed_step
from qnewton.bench.full_batch import case_full_batch
from qnewton.bench.kappa import case_kappa
from qnewton.bench.newton_step import case_newton_step
from qnewton.bench.scaling import case_scaling
from qnewton.bench.scheduler import case_scheduler
from qnewton.bench.settings import Settings
from qnewton.bench.step_cost import case_step_cost
from qnewton.bench.time_to_target import case_time_to_target
from qnewton.bench.width_scaling import case_width_scaling
from qnewton.registry import Registry
from qnewton.solvers import MachineRates

#: Keys every result entry has (``measured`` is ``None`` and ``error`` is set when a case fails).
#: ``met`` is the verdict of the headline (median) figure; ``per_repeat`` is
#: ``{"measured": [...], "met": [...], "what": "..."}``, the same figure and verdict computed from
#: each interleaved repeat alone, from which the suite decides met / missed / noisy.
REQUIRED_KEYS = ("name", "measured", "unit", "baseline", "target", "met", "per_repeat", "timings")

CaseFunction = Callable[[Settings, MachineRates, int], dict[str, Any] | list[dict[str, Any]]]

#: Case name → the function that measures it, in the order the suite runs and lists them.
BENCH_CASES: Registry[CaseFunction] = Registry("case")
for _name, _function in (
    ("newton-step-vs-release", case_newton_step),
    ("dense-solve-efficiency", case_dense_solve),
    ("kappa-estimation", case_kappa),
    ("scheduler-quality", case_scheduler),
    ("scheduler-overhead", case_scheduler),
    ("scaling", case_scaling),
    ("step-cost", case_step_cost),
    ("step-cost-ggn", case_step_cost),
    ("step-cost-kfac", case_step_cost),
    ("step-overhead", case_step_cost),
    ("time-to-target", case_time_to_target),
    ("width-scaling", case_width_scaling),
    ("distributed-step", case_distributed_step),
    ("full-batch", case_full_batch),
):
    BENCH_CASES.register(_name, _function)
del _name, _function

#: Every case name, in suite order.
CASES: tuple[str, ...] = BENCH_CASES.names()
