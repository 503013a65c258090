"""``QNewton``: a ``torch.optim.Optimizer`` taking block-diagonal Newton steps.

A thin optimizer over the pipeline (docs/method.md §3). Each step:

1. runs the closure, which returns per-sample losses ``(S,)`` (objective: their mean) or
   ``(losses, outputs)`` for the generalized Gauss-Newton;
2. builds one curvature block per parameter block (:mod:`qnewton.curvature`), combined over the
   ranks by the step path (:class:`~qnewton.distributed.StepPath`, the identity in one process);
3. solves every block's system with :func:`~qnewton.stepping.solve_block` — condition, schedule
   onto a classical solver or the QLSA, check descent, retry, fall back — each block once, by its
   owner rank, and books the outcomes in one place (:func:`~qnewton.stepping.book_outcomes`);
4. shapes each direction (optional clip, momentum) and lets the step rule move θ
   (:data:`~qnewton.stepping.STEP_RULES`, docs/method.md §4.12).

Its settings are declared once, in :data:`qnewton.options.OPTIONS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from qnewton.accounting import Ledger
from qnewton.conditioning import ConditioningConfig
from qnewton.curvature import (
    CURVATURES,
    BlockPartition,
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
    curvature_config,
    options_doc,
    resolve_options,
    scheduler_config,
    with_option_signature,
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


class QNewton(Optimizer):
    """Block-diagonal Newton optimizer with hybrid quantum-classical scheduling (Q-Newton).

    Args:
        params: parameters or param groups; pass ``model.named_parameters()`` to get readable
            block names in the solve records (and to group weight+bias per module).
        lr: ``step_rule="fixed"``: the step size β in θ ← θ + β·Δ; ``"adaptive"``: a scale on
            the group's directions before the step size α ∈ (0, 1] is chosen (> 0).
        rates: :class:`~qnewton.solvers.MachineRates` for the classical time models; ``None``
            calibrates this machine (cached) at the first step that needs them.
        ledger: a :class:`~qnewton.accounting.Ledger` to book times and records into.
        seed: seed for the QLSA backend's and the curvature subsets' random draws.
        process_group: a ``torch.distributed`` group to run on; ``None``: the default group
            when one is initialized (``torchrun``), else a single process. Each rank's closure
            evaluates its shard of the global batch; the step equals one process's step on the
            whole batch (docs/method.md §4.10).

    Settings (keyword-only, :data:`qnewton.options.OPTIONS`; ``reg_scheme``, ``reg``,
    ``prune_ratio``, ``prune_count``, ``momentum`` and ``clip`` are per param group):
    """

    __doc__ = (__doc__ or "") + "\n" + options_doc() + "\n"

    @with_option_signature
    def __init__(self, params: Iterable[Any], lr: float = 1.0, *,
                 rates: MachineRates | None = None, ledger: Ledger | None = None, seed: int = 0,
                 process_group: Any = None, **options: Any) -> None:
        check_positive("lr", lr)
        opts = resolve_options(options)
        super().__init__(params, {"lr": lr, **{k: opts[k] for k in GROUP_OPTIONS}})
        for group in self.param_groups:
            self._conditioning_config(group, group["reg"])  # its checks, now
        self.options = opts
        scheduler = Scheduler(scheduler_config(opts), rates=rates, seed=seed)
        self.kind = CURVATURES[opts["curvature"]]
        self.curvature_config = curvature_config(opts)
        self.curvature_schedule = CurvatureSchedule(opts["curvature_batch"],
                                                    opts["curvature_every"], seed)
        self.kfac = KroneckerAmortizer(opts["kfac_every"], opts["kfac_decay"]) if (
            opts["curvature"] == "kfac") else None
        self.pipeline = SolvePipeline(scheduler, opts["max_retries"],
                                      opts["damping_growth"], opts["exact_kappa_max_n"])
        self.step_rule = STEP_RULES[opts["step_rule"]](damping=opts["damping"])
        self.path = StepPath(process_group)
        self.ledger = ledger if ledger is not None else Ledger()
        self.guard = NonFiniteGuard(opts["on_nonfinite"], opts["max_nonfinite"])
        self._closure_checked = False  # the kind's closure check runs at the first step
        #: the step rule's record of the last step (damping, step size, ρ, ...), or None
        self.last_step_info: dict[str, Any] | None = None
        #: the last step's block outcomes (direction, how, records, measured seconds by phase)
        self.last_outcomes: list[BlockOutcome] = []
        self.partition = BlockPartition(opts["grouping"])
        for group in self.param_groups:
            self.partition.add_group(group)

    # -- set-up -------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim`` semantics; the new group gets its parameter blocks at once."""
        super().add_param_group(param_group)
        if hasattr(self, "partition"):  # __init__ partitions its own groups at its end
            group = self.param_groups[-1]
            self._conditioning_config(group, group["reg"])
            self.partition.add_group(group)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state plus the ledger (solve counts, modeled seconds, events) and
        the step rule's state, so that a resumed optimizer keeps its accounting."""
        state = super().state_dict()
        state["qnewton"] = {"ledger": self.ledger.state_dict(),
                            "adaptive": self.step_rule.state_dict(),
                            "nonfinite_in_a_row": self.guard.in_a_row,
                            "kfac": self.kfac.state_dict() if self.kfac else None}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("qnewton", None)
        super().load_state_dict(state_dict)
        if extra is not None:  # checkpoints of earlier versions carry no ledger
            self.ledger.load_state_dict(extra["ledger"])
            self.step_rule.load_state_dict(extra["adaptive"])
            self.guard.in_a_row = int(extra["nonfinite_in_a_row"])
            if self.kfac is not None and extra.get("kfac") is not None:
                self.kfac.load_state_dict(extra["kfac"])

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler every block solve routes through."""
        return self.pipeline.scheduler

    @scheduler.setter
    def scheduler(self, scheduler: Scheduler) -> None:
        self.pipeline = dataclasses.replace(self.pipeline, scheduler=scheduler)

    @staticmethod
    def _conditioning_config(group: dict[str, Any], reg: float) -> ConditioningConfig:
        return ConditioningConfig(reg_scheme=group["reg_scheme"], reg=reg,
                                  prune_ratio=group["prune_ratio"],
                                  prune_count=group["prune_count"])

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
        local, result = self._curvature(step, losses, outputs, jobs)
        if result is None:
            return loss
        extra = self.step_rule.damping

        def solve_one(i: int, curv: Any, grad: torch.Tensor) -> BlockOutcome:
            group, block = jobs[i]
            reg = group["reg"] + extra if extra else group["reg"]
            job = BlockJob(step, i, block.name, self._conditioning_config(group, reg))
            return solve_block(job, curv, grad, self.pipeline)

        outcomes = self.path.solve(result, solve_one, self.scheduler, self.ledger)
        self.last_outcomes = outcomes
        moves = book_outcomes(self.ledger, step, jobs, outcomes, self.state)
        blocks = [b for _, b in jobs]
        self.last_step_info = self.step_rule.apply(StepContext(
            step, closure, losses, outputs, loss, dict(zip(blocks, result.grads, strict=True)),
            self.kind, dict(zip(blocks, local.blocks, strict=True)), self.path, self.ledger),
            moves)
        for p in (p for group in self.param_groups for p in group["params"]):
            self.state[p]["step"] = step + 1
        return loss

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
                   jobs: list[tuple[dict[str, Any], ParamBlock]]
                   ) -> tuple[CurvatureResult, CurvatureResult | None]:
        """This rank's curvature and the global batch's (``None``: a non-finite gradient, the
        step skipped); sets each parameter's ``.grad``."""
        ledger, blocks = self.ledger, [b for _, b in jobs]
        over_budget = "matrix-free" if self.options["matrix_free"] else "skip"
        with ledger.phase("curvature"), torch.enable_grad():
            local, reused = self.curvature_schedule(losses, blocks, self.curvature_config,
                                                    outputs, step, over_budget)
            local = amortized(local, self.kfac, step, blocks, reused)
            if not (self._closure_checked or local.bypass_covered):  # once, on own gradients
                self.kind.check_closure(losses, outputs, [p for b in blocks for p in b.params], [
                    g for b, gb in zip(blocks, local.grads, strict=True)
                    for g in (piece.reshape(-1) for piece in unflatten_block(gb, b))])
                self._closure_checked = True
        ledger.add_curvature(reused=reused, samples=local.curvature_samples,
                             of=local.num_samples, substituted=local.substitution)
        result = self.path.combine(local, self.curvature_config, over_budget, ledger)
        bad = [b.name for b, ok in zip(blocks, finite_each(result.grads), strict=True) if not ok]
        if bad:
            self.guard.skip(ledger, step, "non-finite-gradient", f"non-finite gradient in {bad}",
                            bad)
            return local, None
        self.guard.in_a_row = 0
        book_gradients(ledger, step, blocks, result)
        return local, result
