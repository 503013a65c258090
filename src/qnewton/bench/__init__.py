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
6. ``step-cost``, ``step-cost-ggn`` and ``step-overhead`` (:mod:`~qnewton.bench.step_cost`):
   a QNewton step with the CLI's settings (Fisher, GGN) against an Adam step at the same batch on
   an MLP (digits, MNIST at batch 128 and 512), a CNN and a GRU, and the scheduler's share of it.
7. ``time-to-target`` (:mod:`~qnewton.bench.time_to_target`): training time to a test accuracy
   against Adam, L-BFGS, K-FAC (curvlinops, the optional ``bench`` extra) and a matrix-free GGN
   Newton-CG (:mod:`~qnewton.bench.peers`).
8. ``width-scaling`` (:mod:`~qnewton.bench.width_scaling`): step time, peak memory and the
   parameters moved by Newton directions against the hidden width, one process per point.
9. ``full-batch`` (:mod:`~qnewton.bench.full_batch`): accuracy at equal time and time to target
   on full-batch problems (least squares, 1-D and 2-D Poisson PINNs, L2 logistic regression, a
   deep autoencoder; :mod:`~qnewton.bench.full_batch_problems`), QNewton at its defaults against
   Adam, L-BFGS, scipy ``least_squares``, sklearn ``LogisticRegression`` and a whole-model
   Levenberg–Marquardt reference (:mod:`~qnewton.bench.levenberg_marquardt`).

Cases 6–9 measure what a user gets: for 6–8 :mod:`~qnewton.bench.workloads` builds QNewton
exactly as ``qnewton train`` does, with overrides only in its ``QNEWTON_SETTINGS``; case 9 builds
it as a library user does, ``QNewton(model.named_parameters())`` at the constructor's defaults
(:func:`~qnewton.bench.full_batch_runs.qnewton_at_defaults`). An entry may carry
detail ``rows`` (one per model, peer or point), decided by the same rule and listed under it.

How a case is measured and decided:

* **One thread, pinned.** The suite runs with ``torch.set_num_threads(1)`` (``--threads N`` to
  change it; recorded as ``machine.threads``) and restores the previous count afterwards.
* **Interleaved repeats.** Each case times its own code and its baseline in alternating rounds
  (A B, B A, A B, ...; :func:`~qnewton.bench.stats.time_interleaved`), after warm-up rounds, so
  both see the same load; each round gives one value of the case's figure (``per_repeat``).
* **Load recorded.** The 1/5/15-minute load average before and after every case is in the JSON
  (``load_average``) and the markdown table.
* **met / missed / noisy.** A case is *met* or *missed* only when (a) the verdict of its headline
  figure (from the medians) and the verdict of every round's figure agree — for a one-sided
  target such as ``>= 30x``, the target lies outside the range spanned by the repeats and the
  median — and (b) the 1-minute load average before and after the case is at most the number of
  cores. Otherwise it is **noisy** (``noisy_reasons`` says which): a difference inside the spread
  is no difference. ``met`` keeps the median's verdict; ``verdict`` is the decision.
  Per round: ``newton-step-vs-release`` the release/ours ratio of that round;
  ``dense-solve-efficiency`` the worst judged size's GEMM fraction; ``kappa-estimation`` the
  fraction of systems meeting the target with that round's time fraction; ``scheduler-quality``
  the regret from the k-th of ``repeats`` chunks of every solver's interleaved rounds (chunk
  medians); ``scheduler-overhead`` each training step's share; ``scaling`` the exponents fitted
  to that round's timings; ``step-cost``/``step-cost-ggn`` the worst model's QNewton/Adam ratio
  in that round; ``step-overhead`` the worst model's share in each timed step;
  ``time-to-target`` the worst task's ratio in each round of training runs; ``width-scaling``
  the smallest Newton fraction (one figure: it counts every step); ``full-batch`` the share of
  problems QNewton wins in each round.

Modules, each importing only those listed before it: :mod:`~qnewton.bench.stats` (pure
helpers), :mod:`~qnewton.bench.settings` (sizes per mode), :mod:`~qnewton.bench.release`,
:mod:`~qnewton.bench.fixtures`, :mod:`~qnewton.bench.workloads`,
:mod:`~qnewton.bench.peers`, :mod:`~qnewton.bench.full_batch_problem`, then
:mod:`~qnewton.bench.full_batch_problems` and :mod:`~qnewton.bench.levenberg_marquardt`, then
:mod:`~qnewton.bench.full_batch_runs`, one module per case, :mod:`~qnewton.bench.cases` (the
:data:`BENCH_CASES` registry; adding a case is one file and one entry there),
:mod:`~qnewton.bench.suite` (running and writing) and :mod:`~qnewton.bench.cli`.

Every number is **measured** on this machine unless its key or label says ``modeled`` (quantum
times from the cost model, and any extrapolation).
"""

from qnewton.bench.cases import BENCH_CASES, CASES, REQUIRED_KEYS
from qnewton.bench.cli import build_parser, main
from qnewton.bench.settings import MODES, SETTINGS, Settings
from qnewton.bench.stats import (
    chunk_medians,
    fit_exponent,
    policy_and_oracle,
    regret,
    summarize,
    time_interleaved,
    time_repeats,
    verdict,
)
from qnewton.bench.suite import (
    VERDICT_RULE,
    load_average,
    machine_info,
    markdown_table,
    pinned_threads,
    run_suite,
    to_jsonable,
)

__all__ = [
    "BENCH_CASES", "CASES", "MODES", "REQUIRED_KEYS", "SETTINGS", "VERDICT_RULE", "Settings",
    "build_parser", "chunk_medians", "fit_exponent", "load_average", "machine_info", "main",
    "markdown_table", "pinned_threads", "policy_and_oracle", "regret", "run_suite", "summarize",
    "time_interleaved", "time_repeats", "to_jsonable", "verdict",
]
