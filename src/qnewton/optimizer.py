"""``QNewton``: a thin ``torch.optim.Optimizer`` over the step trunk (docs/method.md §3).

A step runs the closure, builds and combines the curvature (:mod:`qnewton.curvature`,
:class:`~qnewton.distributed.StepPath`), solves every block once with
:func:`~qnewton.stepping.solve_block`, books the outcomes
(:func:`~qnewton.stepping.book_outcomes`) and lets the step rule move θ (docs/method.md §4.12).
Its settings are declared once, in :data:`qnewton.options.OPTIONS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from qnewton.accounting import Ledger
from qnewton.curvature import (
    CURVATURES,
    BlockPartition,
    CurvatureConfig,
    CurvatureKind,
    CurvatureResult,
    CurvatureSchedule,
    ParamBlock,
    curvature_closure,
    finite_each,
    unflatten_block,
)
from qnewton.curvature.kfac_amortize import KroneckerAmortizer, amortized
from qnewton.distributed.step import StepPath
from qnewton.options import (
    GROUP_OPTIONS,
    conditioning_config,
    curvature_config,
    resolve_options,
    scheduler_config,
    with_options,
)
from qnewton.scheduling import Scheduler
from qnewton.solvers import MachineRates
from qnewton.stepping import (
    CLOSURE_CONTRACT,
    STEP_RULES,
    BlockJob,
    BlockOutcome,
    ClosureError,
    NonFiniteGuard,
    SolvePipeline,
    StepContext,
    book_gradients,
    book_outcomes,
    solve_block,
    unpack_closure_output,
)
from qnewton.validation import check_positive


@with_options
class QNewton(Optimizer):
    """Block-diagonal Newton optimizer with hybrid quantum-classical scheduling (Q-Newton).

    Args:
        params: parameters or param groups; ``model.named_parameters()`` names the blocks.
        lr: fixed rule: β in θ ← θ + β·Δ; adaptive: a scale on the directions before α (> 0).
        rates: this machine's :class:`~qnewton.solvers.MachineRates` (``None``: calibrated).
        ledger: the :class:`~qnewton.accounting.Ledger` to book times and records into.
        seed: seed of the QLSA backend's and the curvature subsets' random draws.
        process_group: a ``torch.distributed`` group (``None``: the default one if initialized,
            else one process); each rank's closure evaluates its shard (docs/method.md §4.10).

    Settings (keyword-only, :data:`qnewton.options.OPTIONS`; ``reg_scheme``, ``reg``,
    ``prune_ratio``, ``prune_count``, ``momentum`` and ``clip`` are per param group):
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, *,
                 rates: MachineRates | None = None, ledger: Ledger | None = None, seed: int = 0,
                 process_group: Any = None, **options: Any) -> None:
        check_positive("lr", lr)
        opts = resolve_options(options)
        self.step_rule = STEP_RULES[opts["step_rule"]](damping=opts["damping"])
        if opts["reg"] is None:
            opts["reg"] = self.step_rule.default_reg
        super().__init__(params, {"lr": lr, **{k: opts[k] for k in GROUP_OPTIONS}})
        for group in self.param_groups:
            conditioning_config(group, group["reg"])  # its checks, now
        self.options = opts
        scheduler = Scheduler(scheduler_config(opts), rates=rates, seed=seed)
        # "auto" is resolved at the first step, by whether the closure returns outputs
        self.curvature_config: CurvatureConfig | None = (
            None if opts["curvature"] == "auto" else curvature_config(opts, False))
        self.kind: CurvatureKind | None = (
            None if self.curvature_config is None else CURVATURES[self.curvature_config.kind])
        self.curvature_schedule = CurvatureSchedule(opts["curvature_batch"],
                                                    opts["curvature_every"], seed)
        self.amortizer = KroneckerAmortizer(opts["kfac_every"], opts["kfac_decay"])  # K-FAC only
        self.pipeline = SolvePipeline(scheduler, opts["max_retries"],
                                      opts["damping_growth"], opts["exact_kappa_max_n"])
        self.path, self.ledger = StepPath(process_group), ledger if ledger is not None else Ledger()
        self.guard = NonFiniteGuard(opts["on_nonfinite"], opts["max_nonfinite"])
        self._closure_checked = False  # the kind's closure check runs at the first step
        self.last_step_info: dict[str, Any] | None = None  # the step rule's last record
        self.last_outcomes: list[BlockOutcome] = []  # the last step's, in block order
        self.partition = BlockPartition(opts["grouping"],
                                        None if self.kind is None else self.kind.auto_grouping)
        for group in self.param_groups:
            self.partition.add_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim`` semantics; the new group gets its parameter blocks at once."""
        super().add_param_group(param_group)
        if hasattr(self, "partition"):  # __init__ partitions its own groups at its end
            group = self.param_groups[-1]
            conditioning_config(group, group["reg"])
            self.partition.add_group(group)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state plus the ledger (solve counts, modeled seconds, events) and
        the step rule's state, so that a resumed optimizer keeps its accounting."""
        state = super().state_dict()
        state["qnewton"] = {"ledger": self.ledger.state_dict(),
                            "adaptive": self.step_rule.state_dict(),
                            "nonfinite_in_a_row": self.guard.in_a_row,
                            "kfac": self.amortizer.state_dict(),
                            "curvature": self._schedule_state(),
                            "kappa": self.scheduler.kept_kappa.state_dict()}
        return state

    def _schedule_state(self) -> dict[str, Any] | None:
        """The curvature kept for reuse, in one process; ``None`` across ranks, where each rank
        keeps its own shard's rows (a resumed run then builds at its first step)."""
        if self.path.context is not None:
            return None
        return self.curvature_schedule.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("qnewton", None)
        super().load_state_dict(state_dict)
        if extra is not None:  # checkpoints of earlier versions carry no ledger
            self.ledger.load_state_dict(extra["ledger"])
            self.step_rule.load_state_dict(extra["adaptive"])
            self.guard.in_a_row = int(extra["nonfinite_in_a_row"])
            if extra.get("kfac") is not None:
                self.amortizer.load_state_dict(extra["kfac"])
            if extra.get("curvature") is not None:
                self.curvature_schedule.load_state_dict(extra["curvature"])
            self.scheduler.kept_kappa.load_state_dict(extra.get("kappa", {}))

    @property
    def scheduler(self) -> Scheduler:  # the scheduler every block solve routes through
        return self.pipeline.scheduler

    @scheduler.setter
    def scheduler(self, scheduler: Scheduler) -> None:
        self.pipeline = dataclasses.replace(self.pipeline, scheduler=scheduler)

    @property
    def step_count(self) -> int:
        """Number of completed :meth:`step` calls (restored by ``load_state_dict``)."""
        first = self.param_groups[0]["params"][0]
        return int(self.state[first].get("step", 0)) if first in self.state else 0

    # -- the step -----------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """Take one Newton step; returns the mean loss (before the update).

        The closure must run the model under autograd and return per-sample losses of shape
        ``(S,)`` — or ``(losses, outputs)`` for ``curvature="ggn"`` — without calling
        ``backward`` itself. After the step each parameter's ``.grad`` holds the mean-loss
        gradient the step used.
        """
        if closure is None:
            raise ValueError(f"QNewton.step needs a closure: {CLOSURE_CONTRACT}")
        step, jobs = self.step_count, self.partition.current(self.param_groups)
        self.last_step_info = None
        if not jobs:
            raise ValueError("QNewton.step: no parameter requires grad (all are frozen)")
        losses, outputs, loss = self._evaluate(closure, jobs)
        if not bool(torch.isfinite(loss)):
            self.guard.skip(self.ledger, step, "non-finite-loss", f"loss is {float(loss)}", [])
            return loss
        fresh = self.step_rule.wants_fresh_curvature(float(loss))
        local, result = self._curvature(step, losses, outputs, jobs, fresh)
        if result is None:
            return loss
        rule = self.step_rule
        rule.begin(step, float(loss), self.path.curvature_scale(local, self.ledger))
        schedule = self.curvature_schedule
        kept = None if schedule.every == 1 else schedule.last_reason == "reused"
        self.path.reusing = kept is not None and rule.regime != "full-batch"
        self.last_outcomes = self.path.solve(result, self._solver(step, jobs), self.scheduler,
                                             self.ledger, kept)
        moves = book_outcomes(self.ledger, step, jobs, self.last_outcomes, self.state)
        blocks = [b for _, b in jobs]
        self.last_step_info = rule.apply(StepContext(
            step, closure, losses, outputs, loss, dict(zip(blocks, result.grads, strict=True)),
            self.kind, dict(zip(blocks, local.blocks, strict=True)), self.path, self.ledger,
            bypass=bool(local.bypass), model_rows=not local.substitution,
            bypass_covered=local.bypass_covered), moves)
        for p in (p for group in self.param_groups for p in group["params"]):
            self.state[p]["step"] = step + 1
        return loss

    def _solver(self, step: int, jobs: list[tuple[dict[str, Any], ParamBlock]]
                ) -> Callable[[int, Any, torch.Tensor], BlockOutcome]:
        """Block ``i``'s solve, conditioned with its group's settings and the rule's damping."""
        rule = self.step_rule
        extra, shift, floor = rule.damping, rule.shift, rule.min_eig_fraction

        def solve_one(i: int, curv: Any, grad: torch.Tensor) -> BlockOutcome:
            group, block = jobs[i]
            reg = group["reg"] + extra if extra else group["reg"]
            config = conditioning_config(group, reg, shift, floor)
            return solve_block(BlockJob(step, i, block.name, config), curv, grad, self.pipeline)

        return solve_one

    def _evaluate(self, closure: Callable[[], Any], jobs: list[tuple[dict[str, Any], ParamBlock]]
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The closure's losses and outputs, and the global batch's mean loss."""
        params = [p for _, b in jobs for p in b.params]
        for p in params:
            p.grad = None  # a closure that calls backward() is caught by the grads it leaves
        with self.ledger.phase("forward_backward"), torch.enable_grad(), curvature_closure():
            losses, outputs = unpack_closure_output(closure())
        if any(p.grad is not None for p in params) or losses.grad_fn is None:
            raise ClosureError(
                "the closure called backward() or returned losses without their autograd graph "
                f"(detached, or computed under no_grad); {CLOSURE_CONTRACT}")
        loss = self.path.global_loss(losses, losses.detach().mean(), self.scheduler, self.ledger)
        return losses, outputs, loss

    def _curvature(self, step: int, losses: torch.Tensor, outputs: torch.Tensor | None,
                   jobs: list[tuple[dict[str, Any], ParamBlock]], fresh: bool = False
                   ) -> tuple[CurvatureResult, CurvatureResult | None]:
        """This rank's curvature and the global batch's (``None``: a non-finite gradient, the
        step skipped); sets each parameter's ``.grad``. ``fresh``: the step rule asks for a
        build rather than kept blocks."""
        ledger, blocks = self.ledger, [b for _, b in jobs]
        params = [p for b in blocks for p in b.params]
        if self.curvature_config is None:  # the first step: "auto" sees what the closure gives
            self.curvature_config = curvature_config(self.options, outputs is not None)
            self.kind = CURVATURES[self.curvature_config.kind]
        over_budget = "matrix-free" if self.options["matrix_free"] else "skip"
        with ledger.phase("curvature"), torch.enable_grad():
            local, reused = self.curvature_schedule(losses, blocks, self.curvature_config,
                                                    outputs, step, over_budget, fresh)
            local = amortized(local, self.amortizer, step, blocks, reused)
            if not self._closure_checked:  # once, on this rank's own gradients
                if not local.bypass_covered:
                    self.kind.check_closure(losses, outputs, params, [
                        g for b, gb in zip(blocks, local.grads, strict=True)
                        for g in (piece.reshape(-1) for piece in unflatten_block(gb, b))])
                ledger.add_event(step, "settings", "resolved settings", grouping=self.partition
                                 .resolved, curvature=self.curvature_config.kind)
                self._closure_checked = True
        ledger.add_curvature(reused=reused, samples=local.curvature_samples,
                             of=local.num_samples, substituted=local.substitution,
                             reason=self.curvature_schedule.last_reason)
        result = self.path.combine(local, self.curvature_config, over_budget, ledger)
        self.curvature_schedule.rebuilt = set(result.matrix_free)
        bad = [b.name for b, ok in zip(blocks, finite_each(result.grads), strict=True) if not ok]
        if bad:
            self.guard.skip(ledger, step, "non-finite-gradient", f"non-finite gradient in {bad}",
                            bad)
            return local, None
        self.guard.in_a_row = 0
        book_gradients(ledger, step, blocks, result)
        return local, result
