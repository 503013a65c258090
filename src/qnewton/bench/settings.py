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


SETTINGS: dict[str, Settings] = {
    "smoke": Settings(
        repeats=2, warmup=1,
        step_inputs=16, step_batch=64, step_release_max_n=10**9,
        dense_sizes=(100, 200),
        kappa_sizes=(60, 120), kappa_values=(1e2, 1e4), kappa_real_hidden=4,
        sched_hidden=4, sched_batch=32, sched_steps=1,
        scaling_hidden=(2, 4, 8), scaling_batch=32,
    ),
    "quick": Settings(
        repeats=3, warmup=1,
        step_inputs=196, step_batch=512, step_release_max_n=10**9,
        dense_sizes=(1000, 2000),
        kappa_sizes=(500, 2000), kappa_values=(1e1, 1e2, 1e4, 1e6), kappa_real_hidden=32,
        sched_hidden=16, sched_batch=256, sched_steps=3,
        scaling_hidden=(2, 4, 8, 16, 32, 48), scaling_batch=256,
    ),
    "full": Settings(
        repeats=3, warmup=1,
        step_inputs=784, step_batch=2048, step_release_max_n=11760,
        dense_sizes=(1000, 2000, 4000),
        kappa_sizes=(500, 1000, 2000, 4000), kappa_values=(1e1, 1e2, 1e4, 1e6),
        kappa_real_hidden=64,
        sched_hidden=16, sched_batch=256, sched_steps=8,
        scaling_hidden=(2, 4, 8, 16, 32, 48, 64, 80), scaling_batch=256,
    ),
}

#: The modes, smallest first.
MODES: tuple[str, ...] = tuple(SETTINGS)
