"""Benchmark suite: ``qnewton bench [--quick] [--out FILE.json] [--markdown FILE.md]``.

Each case measures a pair of things in the same process (warm-up, then several repeats; the
JSON keeps every raw timing and min/median/max) and compares the measured figure with a target:

1. ``newton-step-vs-release`` (:mod:`~qnewton.bench.newton_step`): one block-diagonal Newton
   step of an MLP with the empirical Fisher, our pipeline against the code release's approach
   (:mod:`~qnewton.bench.release`, docs/method.md §6).
2. ``dense-solve-efficiency`` (:mod:`~qnewton.bench.dense_solve`): GFLOP/s of our Cholesky
   solve against a GEMM at the same N.
3. ``kappa-estimation`` (:mod:`~qnewton.bench.kappa`): the scheduler's default κ estimator
   against exact ``eigvalsh``.
4. ``scheduler-quality`` and ``scheduler-overhead`` (:mod:`~qnewton.bench.scheduler`): regret
   of the ``cost`` policy against an oracle that knows each solve's true cost, and
   conditioning + estimation + scheduling time as a share of the step time.
5. ``scaling`` (:mod:`~qnewton.bench.scaling`): Newton step time against block size N for ours
   and the release's approach, with fitted log-log exponents.

Modules, each importing only those listed before it: :mod:`~qnewton.bench.stats` (pure
helpers), :mod:`~qnewton.bench.settings` (sizes per mode), :mod:`~qnewton.bench.release`,
:mod:`~qnewton.bench.fixtures`, one module per case, :mod:`~qnewton.bench.cases` (the
:data:`BENCH_CASES` registry; adding a case is one file and one entry there),
:mod:`~qnewton.bench.suite` (running and writing) and :mod:`~qnewton.bench.cli`.

Every number is **measured** on this machine unless its key or label says ``modeled`` (quantum
times from the cost model, and any extrapolation).
"""

from qnewton.bench.cases import BENCH_CASES, CASES, REQUIRED_KEYS
from qnewton.bench.cli import build_parser, main
from qnewton.bench.settings import MODES, SETTINGS, Settings
from qnewton.bench.stats import fit_exponent, policy_and_oracle, regret, summarize, time_repeats
from qnewton.bench.suite import machine_info, markdown_table, run_suite, to_jsonable

__all__ = [
    "BENCH_CASES", "CASES", "MODES", "REQUIRED_KEYS", "SETTINGS", "Settings", "build_parser",
    "fit_exponent", "machine_info", "main", "markdown_table", "policy_and_oracle", "regret",
    "run_suite", "summarize", "time_repeats", "to_jsonable",
]
