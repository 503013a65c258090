"""Sizes and repeat counts of every case, per mode (``smoke`` for tests, ``quick``, ``full``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """What one mode runs; each case reads only its own fields."""

    repeats: int
    warmup: int
    # newton-step-vs-release
    step_inputs: int
    step_batch: int
    step_release_max_n: int  # larger release blocks: measured on a column subset, extrapolated
    # dense-solve-efficiency
    dense_sizes: tuple[int, ...]
    # kappa-estimation
    kappa_sizes: tuple[int, ...]
    kappa_values: tuple[float, ...]
    kappa_real_hidden: int
    # scheduler-quality, scheduler-overhead
    sched_hidden: int
    sched_batch: int
    sched_steps: int
    # scaling
    scaling_hidden: tuple[int, ...]
    scaling_batch: int
    # step-cost, step-cost-ggn, step-overhead: (workload, batch or None for the task's default)
    cost_workloads: tuple[tuple[str, int | None], ...]
    cost_tiny: bool
    # time-to-target: (task, target test accuracy); caps per training run
    ttt_targets: tuple[tuple[str, float], ...]
    ttt_tiny: bool
    ttt_max_steps: int
    ttt_max_seconds: float
    ttt_eval_every: int
    ttt_rounds: int  # interleaved re-runs of each method's best configuration
    ttt_adam_lrs: tuple[float, ...]
    ttt_kfac_lrs: tuple[float, ...]
    ttt_ggn_lrs: tuple[float, ...]
    # width-scaling
    width_hidden: tuple[int, ...]
    width_batches: tuple[int, ...]
    width_task: str
    width_fresh_process: bool  # one Python process per point (memory not shared between points)
    # full-batch: problems, their tiny versions, measured training seconds per run, rounds,
    # Adam's learning-rate grid, metric evaluations per budget (the time to target's resolution)
    fb_problems: tuple[str, ...]
    fb_tiny: bool
    fb_budget: float
    fb_rounds: int
    fb_adam_lrs: tuple[float, ...]
    fb_evals: int


#: Every problem of the full-batch case, in the order it runs them.
FULL_BATCH_PROBLEMS = ("least-squares", "poisson-1d", "poisson-2d", "logistic", "autoencoder")

SETTINGS: dict[str, Settings] = {
    "smoke": Settings(
        repeats=2, warmup=1,
        step_inputs=16, step_batch=64, step_release_max_n=10**9,
        dense_sizes=(100, 200),
        kappa_sizes=(60, 120), kappa_values=(1e2, 1e4), kappa_real_hidden=4,
        sched_hidden=4, sched_batch=32, sched_steps=1,
        scaling_hidden=(2, 4, 8), scaling_batch=32,
        cost_workloads=(("digits-mlp", 32), ("mnist-mlp", 32), ("digits-cnn", 16),
                        ("digits-gru", 8), ("digits-transformer", 8), ("digits-bn-cnn", 16)),
        cost_tiny=True,
        ttt_targets=(("digits", 0.5),), ttt_tiny=True, ttt_max_steps=40, ttt_max_seconds=20.0,
        ttt_eval_every=5, ttt_rounds=1, ttt_adam_lrs=(1e-2,), ttt_kfac_lrs=(0.3,),
        ttt_ggn_lrs=(1.0,),
        width_hidden=(4, 8), width_batches=(32,), width_task="digits",
        width_fresh_process=False,
        fb_problems=FULL_BATCH_PROBLEMS, fb_tiny=True, fb_budget=0.1, fb_rounds=1,
        fb_adam_lrs=(1e-2,), fb_evals=20,
    ),
    "quick": Settings(
        repeats=3, warmup=1,
        step_inputs=196, step_batch=512, step_release_max_n=10**9,
        dense_sizes=(1000, 2000),
        kappa_sizes=(500, 2000), kappa_values=(1e1, 1e2, 1e4, 1e6), kappa_real_hidden=32,
        sched_hidden=16, sched_batch=256, sched_steps=3,
        scaling_hidden=(2, 4, 8, 16, 32, 48), scaling_batch=256,
        cost_workloads=(("digits-mlp", None), ("mnist-mlp", 128), ("mnist-mlp", 512),
                        ("digits-cnn", None), ("digits-gru", None), ("digits-transformer", None),
                        ("digits-bn-cnn", None)),
        cost_tiny=False,
        ttt_targets=(("digits", 0.90), ("mnist", 0.85)), ttt_tiny=False, ttt_max_steps=400,
        ttt_max_seconds=60.0, ttt_eval_every=10, ttt_rounds=1, ttt_adam_lrs=(3e-3, 1e-2),
        ttt_kfac_lrs=(0.1, 0.3), ttt_ggn_lrs=(0.3, 1.0),
        width_hidden=(16, 64, 256), width_batches=(128, 512), width_task="digits",
        width_fresh_process=True,
        fb_problems=FULL_BATCH_PROBLEMS, fb_tiny=False, fb_budget=0.6, fb_rounds=2,
        fb_adam_lrs=(1e-3, 1e-2), fb_evals=50,
    ),
    "full": Settings(
        repeats=3, warmup=1,
        step_inputs=784, step_batch=2048, step_release_max_n=11760,
        dense_sizes=(1000, 2000, 4000),
        kappa_sizes=(500, 1000, 2000, 4000), kappa_values=(1e1, 1e2, 1e4, 1e6),
        kappa_real_hidden=64,
        sched_hidden=16, sched_batch=256, sched_steps=8,
        scaling_hidden=(2, 4, 8, 16, 32, 48, 64, 80), scaling_batch=256,
        cost_workloads=(("digits-mlp", None), ("mnist-mlp", 128), ("mnist-mlp", 512),
                        ("digits-cnn", None), ("digits-gru", None), ("digits-transformer", None),
                        ("digits-bn-cnn", None)),
        cost_tiny=False,
        ttt_targets=(("digits", 0.90), ("mnist", 0.85)), ttt_tiny=False, ttt_max_steps=2000,
        ttt_max_seconds=120.0, ttt_eval_every=10, ttt_rounds=3,
        ttt_adam_lrs=(1e-3, 3e-3, 1e-2), ttt_kfac_lrs=(0.1, 0.3, 1.0), ttt_ggn_lrs=(0.3, 1.0),
        width_hidden=(16, 64, 256, 1024), width_batches=(128, 512), width_task="digits",
        width_fresh_process=True,
        fb_problems=FULL_BATCH_PROBLEMS, fb_tiny=False, fb_budget=10.0, fb_rounds=3,
        fb_adam_lrs=(1e-3, 3e-3, 1e-2), fb_evals=200,
    ),
}

#: The modes, smallest first.
MODES: tuple[str, ...] = tuple(SETTINGS)
