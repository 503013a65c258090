"""One block's Newton direction, as a pure function of its curvature and gradient.

:func:`solve_block` runs the per-block pipeline — condition, prepare the solve's shared work,
analyse κ, decide, solve, check descent, retry with more damping, fall back — and returns a
:class:`BlockOutcome`: the direction, how it was obtained, the solve records, the events and the
measured seconds by phase. It writes to no ledger; the optimizer books every outcome in one place
(:meth:`QNewton._book`), whichever rank solved it (docs/method.md §3, §4.10).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from qnewton.accounting import PhaseClock, SolveRecord
from qnewton.conditioning import ConditioningConfig, condition
from qnewton.curvature import CurvatureBlock, MatrixFreeError
from qnewton.estimation import kappa_exact
from qnewton.scheduling import NoSolverError, Scheduler
from qnewton.solvers.base import SolveError
from qnewton.system import LinearSystem


@dataclass(frozen=True)
class BlockJob:
    """What to solve: block ``index`` (named ``name``) at optimizer step ``step``, conditioned by
    ``config`` (whose ``reg`` already includes the step rule's damping)."""

    step: int
    index: int
    name: str
    config: ConditioningConfig


@dataclass(frozen=True)
class SolvePipeline:
    """The settings every block solve shares.

    Attributes:
        scheduler: routes, solves and records each system.
        max_retries: retries with ``damping_growth``× more regularization after a failed solve
            or a direction that is not a descent direction.
        exact_kappa_max_n: also compute the exact κ of systems up to this N, as diagnostics.
    """

    scheduler: Scheduler
    max_retries: int = 3
    damping_growth: float = 10.0
    exact_kappa_max_n: int = 0


@dataclass
class BlockOutcome:
    """One block's direction and everything the ledger books about it.

    Attributes:
        direction: Δ_b, flat ``(N,)`` float64.
        how: ``"newton"``, ``"fallback"`` (a reported gradient step) or ``"stationary"`` (zero
            gradient), as :data:`qnewton.accounting.UPDATE_KINDS`.
        reason: the fallback's reason, or ``"matrix-free"`` for a Newton direction solved on a
            matrix-free block, else ``None``.
        records: the scheduler's solve records (one per attempt). events: what was handled.
        clock: measured seconds by phase (and diagnostic seconds) of this solve.
        rank: the rank that solved it in a distributed step (``None`` in one process).
    """

    direction: torch.Tensor
    how: str
    reason: str | None = None
    records: list[SolveRecord] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    clock: PhaseClock = field(default_factory=PhaseClock)
    rank: int | None = None


def gradient_fallback(grad: torch.Tensor, system: LinearSystem | None) -> torch.Tensor:
    """Δ = −g/max|Aᵢⱼ| (the caller has reported why the Newton step was not taken)."""
    # Scale by 1/max|A_ij|, the step's natural unit for A (max|A_ij| ≤ ‖A‖₂ ≤ N·max|A_ij|, so
    # this is 1 to N times a Newton step along A's top eigendirection); without a system, a
    # plain gradient step.
    scale = 1.0
    if system is not None:
        try:
            top = system.max_abs_entry()  # an upper bound for a matrix-free Hessian
        except MatrixFreeError:
            top = math.nan
        if math.isfinite(top) and top > 0:
            scale = 1.0 / top
    return -scale * grad


def more_damping(config: ConditioningConfig, growth: float) -> ConditioningConfig:
    """The next retry's conditioning: ``growth``× the regularization and the absolute shift, or
    a small relative regularization when there is none to grow."""
    if config.reg_scheme == "none" or config.reg == 0:
        return dataclasses.replace(config, reg_scheme="max-entry", reg=1e-6,
                                   shift=config.shift * growth)
    return dataclasses.replace(config, reg=config.reg * growth, shift=config.shift * growth)


def solve_block(job: BlockJob, curv: CurvatureBlock | None, grad: torch.Tensor,
                pipeline: SolvePipeline) -> BlockOutcome:
    """The update direction of one block (docs/method.md §3, steps 3–5).

    ``curv`` is ``None`` for a block over the memory budget without a matrix-free form (a
    gradient step). A solve that fails or does not give a descent direction (gᵀΔ < 0) is
    retried with more regularization up to ``pipeline.max_retries`` times, then replaced by a
    reported gradient step.
    """
    clock = PhaseClock()
    events: list[dict[str, Any]] = []
    records: list[SolveRecord] = []

    def done(direction: torch.Tensor, how: str, reason: str | None = None) -> BlockOutcome:
        return BlockOutcome(direction, how, reason, records, events, clock)

    def event(kind: str, message: str, **details: Any) -> None:
        events.append({"step": job.step, "kind": kind, "message": message, "block": job.name,
                       **details})

    grad = grad.to(torch.float64)
    if not bool(grad.any()):  # nothing to solve: the block is at a stationary point
        return done(torch.zeros_like(grad), "stationary")
    if curv is None:
        return done(gradient_fallback(grad, None), "fallback", "over-budget")
    if not curv.all_finite():
        event("non-finite-curvature", f"curvature of {job.name} is not finite; gradient step")
        return done(gradient_fallback(grad, None), "fallback", "non-finite-curvature")
    scheduler = pipeline.scheduler
    config = job.config
    system: LinearSystem | None = None
    for attempt in range(pipeline.max_retries + 1):
        try:
            with clock.phase("conditioning"):
                system = condition(curv, config)
            with clock.phase("solve"):
                # the solve's own work done early: the Gram a Woodbury solve will use, which the
                # κ analysis shares (docs/method.md §4.8)
                scheduler.prepare(system)
            with clock.phase("estimation"):
                analysis = scheduler.analyse_if_needed(system, job.name)
        except MatrixFreeError as exc:
            event("matrix-free-failed", f"{job.name}: {exc}; gradient step")
            return done(gradient_fallback(grad, None), "fallback", "matrix-free-failed")
        with clock.phase("scheduling"):
            try:
                decision = scheduler.decide(system, analysis)
            except NoSolverError as exc:
                event("no-solver", f"{job.name}: {exc}; gradient step")
                return done(gradient_fallback(grad, system), "fallback", "no-solver")
        result, error = None, ""
        with clock.phase("solve"):
            try:
                result = scheduler.run(system, grad, decision,
                                       key=(job.step, job.index, attempt))
            except (SolveError, MatrixFreeError) as exc:
                error = str(exc)
        descent = result is not None and float(grad @ result.x) > 0
        if result is not None and not descent:
            error = "not a descent direction (gᵀΔ ≥ 0)"
        record = scheduler.record(step=job.step, block=job.name, system=system,
                                  analysis=analysis, decision=decision, result=result)
        record.retries = attempt
        if analysis.kappa is not None and analysis.kappa.kind == "exact":
            record.kappa_exact = analysis.kappa.value
        elif system.n <= pipeline.exact_kappa_max_n:
            with clock.diagnostics(), contextlib.suppress(MatrixFreeError):
                record.kappa_exact = kappa_exact(system.materialize()).value
        records.append(record)
        if descent:
            return done(-result.x, "newton", "matrix-free" if curv.matrix_free else None)
        final = attempt == pipeline.max_retries
        record.fallback = "gradient" if final else "retry"
        record.message = error
        event("gradient-fallback" if final else "solve-retry", f"{job.name}: {error}",
              attempt=attempt)
        config = more_damping(config, pipeline.damping_growth)
    return done(gradient_fallback(grad, system), "fallback", "solve-failed")
