"""``QNewton``: a ``torch.optim.Optimizer`` taking block-diagonal Newton steps.

Stage 8 of the pipeline (docs/method.md §3). Each step:

1. runs the closure, which returns per-sample losses ``(S,)`` (objective: their mean) or
   ``(losses, outputs)`` for the generalized Gauss-Newton;
2. builds one curvature block per parameter block (:mod:`qnewton.curvature`);
3. conditions it into ``A = H' + λI`` (:mod:`qnewton.conditioning`);
4. lets the :class:`~qnewton.scheduling.Scheduler` estimate κ, predict quantum (modeled) and
   classical (calibrated) time, choose, and solve ``A x = g``;
5. checks that ``Δ = −x`` is a descent direction (gᵀΔ < 0); if the solve failed or is not a
   descent direction, retries with ``damping_growth``× more regularization, up to ``max_retries``
   times, then falls back to a scaled gradient step ``Δ = −g / max|Aᵢⱼ|``;
6. applies optional element-wise clipping and (SGD-style, as in the code release) momentum to Δ,
   and moves θ by the step rule (:mod:`qnewton.stepping`, docs/method.md §4.12): ``"adaptive"``
   (default) damps the blocks' systems with a Levenberg–Marquardt λ, takes the step size α from
   the whole model's quadratic model and backtracks until the loss falls; ``"fixed"`` (the
   paper's) updates θ ← θ + lr·Δ.

Non-finite values are skipped and reported (``max_nonfinite`` in a row raise
:class:`~qnewton.stepping.NonFiniteError`); non-finite curvature takes the gradient fallback; a
block over ``max_block_bytes`` is solved matrix-free (docs/method.md §4.7). The ledger counts, per
block, the steps moved by a Newton direction and by a fallback.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from qnewton.accounting import Ledger
from qnewton.conditioning import ConditioningConfig, condition
from qnewton.curvature import (
    CURVATURES,
    GROUPINGS,
    CurvatureBlock,
    CurvatureConfig,
    CurvatureSchedule,
    MatrixFreeError,
    ParamBlock,
    finite_each,
    group_parameters,
    unflatten_block,
)
from qnewton.distributed.step import DistributedNewton
from qnewton.estimation import kappa_exact
from qnewton.quantum import DEFAULT_HARDWARE, HARDWARE_PROFILES, HardwareProfile
from qnewton.scheduling import DEFAULT_SOLVERS, NoSolverError, Scheduler, SchedulerConfig
from qnewton.solvers import MachineRates
from qnewton.solvers.base import SolveError
from qnewton.stepping import (
    BACKTRACK,
    CLOSURE_CONTRACT,
    MAX_BACKTRACKS,
    ON_NONFINITE,
    AdaptiveState,
    ClosureError,
    NonFiniteError,
    adapt_damping,
    check_finite_params,
    check_ggn_coverage,
    check_step_rule,
    full_quadratic,
    gradient_fallback,
    predicted_reduction,
    step_size,
    unpack_closure_output,
)
from qnewton.system import LinearSystem
from qnewton.validation import check_choice, check_int, check_positive, check_real


class QNewton(Optimizer):
    """Block-diagonal Newton optimizer with hybrid quantum-classical scheduling (Q-Newton).

    Args:
        params: parameters or param groups; pass ``model.named_parameters()`` to get readable
            block names in the solve records (and to group weight+bias per module).
        lr: ``step_rule="fixed"``: the step size β in θ ← θ + β·Δ; ``"adaptive"``: a scale on
            the group's directions before the step size α ∈ (0, 1] is chosen (> 0).
        step_rule: ``"adaptive"`` (default: Levenberg–Marquardt damping on top of ``reg``,
            step size from the whole model's quadratic model, backtracking; docs/method.md
            §4.12) or ``"fixed"`` (the paper's θ ← θ + lr·Δ, fixed ``reg``, optional clip).
        damping: the adaptive rule's initial and smallest Levenberg–Marquardt λ, added to
            ``reg`` in the conditioning's scheme (``max-entry``: ``(reg + λ)·max|Hᵢⱼ|``).
        on_nonfinite: ``"skip"`` (default) skips a step whose loss or gradient is not finite,
            up to ``max_nonfinite`` steps in a row, then raises
            :class:`~qnewton.stepping.NonFiniteError`; ``"raise"`` raises at once.
        curvature: ``"fisher"`` (empirical Fisher, factor form; default, as in the release),
            ``"ggn"`` (generalized Gauss-Newton; closure must return ``(losses, outputs)``) or
            ``"hessian"`` (exact block Hessian).
        grouping: ``"tensor"`` (one block per parameter tensor) or ``"module"`` (parameters
            whose names share a module prefix, e.g. ``fc1.weight`` and ``fc1.bias``, together).
        reg_scheme, reg: regularization λ (see :func:`qnewton.conditioning.regularization_lambda`);
            the paper's scheme is ``"max-entry"``: λ = reg·max|Hᵢⱼ|.
        prune_ratio, prune_count: optional symmetric magnitude pruning to a row sparsity.
        momentum: SGD-style momentum on the Newton direction, in [0, 1).
        clip: optional element-wise clip of Δ to [−clip, clip] (> 0).
        policy, qlsa, qlsa_backend, hardware, readout, eps, kappa_threshold, kappa_method,
            alpha, shots: scheduler settings (:class:`~qnewton.scheduling.SchedulerConfig`);
            ``hardware`` is a profile name or a :class:`~qnewton.quantum.HardwareProfile`.
        classical_solvers: classical solvers the scheduler may choose from.
        max_block_bytes: memory budget for any dense block (curvature and dense solvers);
            curvature over it is never built: it is solved matrix-free (``matrix_free``) or takes
            the reported gradient fallback, and a factor-form system over it is only solved by
            CG or Woodbury.
        matrix_free: solve blocks over ``max_block_bytes`` from curvature-vector products on the
            closure's graph with CG (default); ``False``: a reported gradient step instead.
        chunk_size: rows per batched backward when building curvature.
        curvature_batch: build the curvature from a seeded random subset of this many of each
            step's samples (the gradient always uses all of them); ``None`` (default): all.
        curvature_every: build the curvature every this many steps and reuse the blocks in
            between with each step's fresh gradient (default 1: every step). See
            :class:`~qnewton.curvature.CurvatureSchedule` (docs/method.md §4.7).
        curvature_dtype: the dtype curvature factors are stored in (default float64);
            ``None``: the model's, which halves a float32 model's factor memory but makes every
            product cast the factor to float64 chunk by chunk (docs/method.md §4.7, "Storage and
            arithmetic dtypes"). Systems are solved in float64 either way.
        max_retries, damping_growth: retries with more regularization on failure.
        rates: :class:`~qnewton.solvers.MachineRates` for the classical time models; ``None``
            calibrates this machine (cached) at the first step that needs them.
        ledger: a :class:`~qnewton.accounting.Ledger` to book times and records into.
        seed: seed for the QLSA backend's random draws.
        exact_kappa_max_n: also compute the exact κ (eigvalsh) of systems with N ≤ this, for
            reports; timed as diagnostics, not as training time (0: never).
        process_group: a ``torch.distributed`` group to run on; ``None``: the default group
            when one is initialized (``torchrun``), else a single process. Each rank's closure
            evaluates its shard of the global batch; the step equals one process's step on the
            whole batch (docs/method.md §4.10).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        *,
        step_rule: str = "adaptive",
        damping: float = 1.0,
        on_nonfinite: str = "skip",
        max_nonfinite: int = 3,
        curvature: str = "fisher",
        grouping: str = "tensor",
        reg_scheme: str = "max-entry",
        reg: float = 1e-3,
        prune_ratio: float | None = None,
        prune_count: int | None = None,
        momentum: float = 0.0,
        clip: float | None = None,
        policy: str = "cost",
        qlsa: str = "jennings",
        qlsa_backend: str = "emulated",
        hardware: str | HardwareProfile = DEFAULT_HARDWARE,
        readout: str | None = None,
        eps: float = 1e-2,
        kappa_threshold: float = 1e4,
        kappa_method: str = "auto",
        alpha: float | None = None,
        shots: int | None = None,
        classical_solvers: tuple[str, ...] = DEFAULT_SOLVERS,
        max_block_bytes: int = 2 * 1024**3,
        matrix_free: bool = True,
        chunk_size: int | None = None,
        curvature_batch: int | None = None,
        curvature_every: int = 1,
        curvature_dtype: torch.dtype | None = torch.float64,
        max_retries: int = 3,
        damping_growth: float = 10.0,
        rates: MachineRates | None = None,
        ledger: Ledger | None = None,
        seed: int = 0,
        exact_kappa_max_n: int = 0,
        process_group: Any = None,
    ) -> None:
        check_positive("lr", lr)
        CURVATURES.check(curvature)
        GROUPINGS.check(grouping)
        check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        if clip is not None:
            check_positive("clip", clip)
        check_int("exact_kappa_max_n", exact_kappa_max_n, 0)
        check_int("max_retries", max_retries, 0)
        check_real("damping_growth", damping_growth, low=1.0, low_open=True)
        check_step_rule(step_rule, damping)
        check_choice("on_nonfinite", on_nonfinite, ON_NONFINITE)
        check_int("max_nonfinite", max_nonfinite, 1)
        if isinstance(hardware, str):
            hardware = HARDWARE_PROFILES[hardware]
        defaults = {
            "lr": lr,
            "reg_scheme": reg_scheme,
            "reg": reg,
            "prune_ratio": prune_ratio,
            "prune_count": prune_count,
            "momentum": momentum,
            "clip": clip,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            # Validates each group's conditioning settings now, with ConditioningConfig's messages.
            self._conditioning_config(group, group["reg"])
        self.scheduler = Scheduler(
            SchedulerConfig(
                hardware=hardware,
                policy=policy,
                qlsa=qlsa,
                qlsa_backend=qlsa_backend,
                readout=readout,
                eps=eps,
                kappa_threshold=kappa_threshold,
                kappa_method=kappa_method,
                alpha=alpha,
                classical_solvers=tuple(classical_solvers),
                shots=shots,
                max_dense_bytes=max_block_bytes,
            ),
            rates=rates,
            seed=seed,
        )
        self.curvature_config = CurvatureConfig(
            kind=curvature, max_block_bytes=max_block_bytes, chunk_size=chunk_size,
            dtype=curvature_dtype,
        )
        self.curvature_schedule = CurvatureSchedule(curvature_batch, curvature_every, seed)
        self.grouping = grouping
        self.matrix_free = bool(matrix_free)
        self.max_retries = max_retries
        self.exact_kappa_max_n = exact_kappa_max_n
        self.damping_growth = damping_growth
        self.ledger = ledger if ledger is not None else Ledger()
        self.step_rule = step_rule
        self.adaptive = AdaptiveState(damping=float(damping))
        self.damping_floor = float(damping)  # λ adapts upwards from here (docs/method.md §4.12)
        self.on_nonfinite = on_nonfinite
        self.max_nonfinite = max_nonfinite
        self._nonfinite_in_a_row = 0
        self._ggn_checked = False  # the GGN coverage check runs at the first GGN step
        #: the step rule's figures of the last step (damping, step size, ρ, ...), or None
        self.last_step_info: dict[str, Any] | None = None
        self._blocks = [self._group_blocks(i, g) for i, g in enumerate(self.param_groups)]
        # distributed seam 0 (docs/method.md §4.10): inactive in a single process
        self.distributed = DistributedNewton(process_group)

    # -- set-up -------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim`` semantics; the new group gets its parameter blocks at once."""
        super().add_param_group(param_group)
        if hasattr(self, "_blocks"):  # __init__ builds the blocks of its own groups at its end
            group = self.param_groups[-1]
            self._conditioning_config(group, group["reg"])
            self._blocks.append(self._group_blocks(len(self.param_groups) - 1, group))

    def _group_blocks(self, index: int, group: dict[str, Any]) -> list[ParamBlock]:
        names = group.get("param_names")
        if names is None:
            if self.grouping == "module":
                raise ValueError(
                    "grouping='module' needs parameter names: pass model.named_parameters()"
                )
            names = [f"group{index}.param{i}" for i in range(len(group["params"]))]
        return group_parameters(zip(names, group["params"], strict=True), self.grouping)

    def _current_blocks(self) -> list[list[ParamBlock]]:
        """The blocks of each group over the parameters that require grad *now*: a parameter
        frozen (``requires_grad_(False)``) or unfrozen after construction regroups its group."""
        for i, group in enumerate(self.param_groups):
            live = {id(p) for p in group["params"] if p.requires_grad}
            if live != {id(p) for b in self._blocks[i] for p in b.params}:
                self._blocks[i] = self._group_blocks(i, group) if live else []
        return self._blocks

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state plus the ledger (solve counts, modeled seconds, events) and
        the step rule's state, so that a resumed optimizer keeps its accounting."""
        state = super().state_dict()
        state["qnewton"] = {"ledger": self.ledger.state_dict(),
                            "adaptive": self.adaptive.to_dict(),
                            "nonfinite_in_a_row": self._nonfinite_in_a_row}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("qnewton", None)
        super().load_state_dict(state_dict)
        if extra is not None:  # checkpoints of earlier versions carry no ledger
            self.ledger.load_state_dict(extra["ledger"])
            self.adaptive = AdaptiveState(**extra["adaptive"])
            self._nonfinite_in_a_row = int(extra["nonfinite_in_a_row"])

    @staticmethod
    def _conditioning_config(group: dict[str, Any], reg: float) -> ConditioningConfig:
        return ConditioningConfig(
            reg_scheme=group["reg_scheme"],
            reg=reg,
            prune_ratio=group["prune_ratio"],
            prune_count=group["prune_count"],
        )

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
        step = self.step_count
        ledger = self.ledger
        self.last_step_info = None
        blocks_by_group = self._current_blocks()
        all_blocks = [b for blocks in blocks_by_group for b in blocks]
        if not all_blocks:
            raise ValueError("QNewton.step: no parameter requires grad (all are frozen)")
        params = [p for b in all_blocks for p in b.params]
        for p in params:
            p.grad = None  # a closure that calls backward() is caught by the grads it leaves
        with ledger.phase("forward_backward"), torch.enable_grad():
            losses, outputs = unpack_closure_output(closure())
        if any(p.grad is not None for p in params) or losses.grad_fn is None:
            raise ClosureError(
                "the closure called backward() or returned losses without their autograd graph "
                f"(detached, or computed under no_grad); {CLOSURE_CONTRACT}")
        loss = losses.detach().mean()
        # distributed seam 1: the global batch's mean loss (all ranks skip alike)
        loss = self.distributed.global_loss(losses, loss, self.scheduler, ledger)
        if not bool(torch.isfinite(loss)):
            self._nonfinite(step, "non-finite-loss", f"loss is {float(loss)}", [])
            return loss
        # The backward passes (gradient, per-sample gradients, HVPs) are booked as curvature.
        with ledger.phase("curvature"), torch.enable_grad():
            result, reused = self.curvature_schedule(
                losses, all_blocks, self.curvature_config, outputs, step,
                "matrix-free" if self.matrix_free else "skip")
        ledger.add_curvature(reused=reused, samples=result.curvature_samples,
                             of=result.num_samples)
        if (outputs is not None and self.curvature_config.kind in ("ggn", "ggn-mc")
                and not self._ggn_checked):
            # once per optimizer (one extra backward), on this rank's own gradients
            with ledger.phase("curvature"), torch.enable_grad():
                check_ggn_coverage(losses, outputs, params, [
                    g for b, gb in zip(all_blocks, result.grads, strict=True)
                    for g in (piece.reshape(-1) for piece in unflatten_block(gb, b))])
            self._ggn_checked = True
        # distributed seam 2: gradients and block modes on the global batch
        result = self.distributed.combine(result, self.curvature_config,
                                          "matrix-free" if self.matrix_free else "skip", ledger)
        bad = [b.name for b, ok in zip(all_blocks, finite_each(result.grads), strict=True)
               if not ok]
        if bad:
            self._nonfinite(step, "non-finite-gradient", f"non-finite gradient in {bad}", bad)
            return loss
        self._nonfinite_in_a_row = 0
        with torch.no_grad():
            for b, g in zip(all_blocks, result.grads, strict=True):
                for p, piece in zip(b.params, unflatten_block(g, b), strict=True):
                    p.grad = piece.to(p.dtype).clone()
        for name, reason in result.skipped.items():
            ledger.add_event(step, "block-over-budget", reason, block=name)
        for name, reason in result.matrix_free.items():
            ledger.add_event(step, "block-matrix-free",
                             f"{reason}; solved matrix-free (curvature-vector products, CG)",
                             block=name)

        adaptive = self.step_rule == "adaptive"
        extra = self.adaptive.damping if adaptive else 0.0
        # distributed seam 3: each block solved by its owner rank, directions exchanged
        solved = self.distributed.solve(
            step, [(g, b) for g, bs in zip(self.param_groups, self._blocks, strict=True)
                   for b in bs], result,
            lambda key, group, block, curv, grad: self._block_direction(
                key, group, block, curv, grad, extra),
            self.scheduler, ledger)
        outcomes = iter(enumerate(zip(result.blocks, result.grads, strict=True)))
        updates: list[tuple[dict[str, Any], ParamBlock, torch.Tensor, tuple[str, str | None]]] = []
        for group, blocks in zip(self.param_groups, blocks_by_group, strict=True):
            for block in blocks:
                index, (curv, grad) = next(outcomes)
                direction, how = (solved[index] if solved is not None else
                                  self._block_direction((step, index), group, block, curv, grad,
                                                        extra))
                updates.append((group, block, direction, how))

        with ledger.phase("update"), torch.no_grad():
            applied = []
            for group, block, direction, (kind, reason) in updates:
                if not bool(torch.isfinite(direction).all()):
                    ledger.add_event(step, "non-finite-direction",
                                     f"{block.name}: non-finite step not applied", block=block.name)
                    ledger.add_update(block.name, block.numel, "not-applied")
                    continue
                ledger.add_update(block.name, block.numel, kind, reason=reason,
                                  matrix_free=reason == "matrix-free")
                if adaptive:
                    applied.append((block, group["lr"] * self._shape(group, block, direction)))
                else:
                    self._apply(group, block, direction)
                    check_finite_params(step, block)
        if adaptive:
            grads = dict(zip(all_blocks, result.grads, strict=True))
            self._adaptive_update(step, closure, losses, outputs, loss, applied, grads)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["step"] = step + 1
        return loss

    def _nonfinite(self, step: int, kind: str, message: str, blocks: list[str]) -> None:
        """Skip the step (parameters untouched), or raise after ``max_nonfinite`` in a row."""
        self._nonfinite_in_a_row += 1
        self.ledger.add_event(step, kind, f"{message}; update skipped", blocks=blocks)
        if self.on_nonfinite == "raise" or self._nonfinite_in_a_row >= self.max_nonfinite:
            where = f" in blocks {blocks}" if blocks else ""
            raise NonFiniteError(
                f"step {step}: {message}{where} ({self._nonfinite_in_a_row} non-finite step(s) "
                f"in a row; on_nonfinite={self.on_nonfinite!r}, max_nonfinite="
                f"{self.max_nonfinite}): lower lr, raise reg, or check the data and the loss")

    def _adaptive_update(self, step: int, closure: Callable[[], Any], losses: torch.Tensor,
                         outputs: torch.Tensor | None, loss: torch.Tensor,
                         applied: list[tuple[ParamBlock, torch.Tensor]],
                         grads: dict[ParamBlock, torch.Tensor]) -> None:
        """θ ← θ + α·Δ with α from the whole model's quadratic model, backtracked until the
        loss falls; λ adapted from ρ (docs/method.md §4.12, :mod:`qnewton.stepping`)."""
        ledger, state = self.ledger, self.adaptive
        info: dict[str, Any] = {"step": step, "damping": state.damping}
        self.last_step_info = info
        if not applied:
            info.update(step_size=0.0, rho=None, accepted=False, backtracks=0)
            return
        params = [p for b, _ in applied for p in b.params]
        delta = torch.cat([d.reshape(-1) for _, d in applied])
        g_dot_d = float(sum(grads[b].to(torch.float64) @ d.to(torch.float64) for b, d in applied))
        if not g_dot_d < 0:  # every block is stationary: nothing to do
            info.update(step_size=0.0, rho=None, accepted=False, backtracks=0)
            return
        with ledger.phase("curvature"), torch.enable_grad():
            curvature = full_quadratic(self.curvature_config.kind, losses, outputs, params, delta)
        samples = losses.numel()
        curvature = self.distributed.global_mean(curvature, samples, "all-reduce of ΔᵀCΔ", ledger)
        alpha = step_size(g_dot_d, curvature, 1.0)
        old = [p.detach().clone() for p in params]
        sizes = [p.numel() for p in params]
        base = float(loss)
        new = math.nan
        for tries in range(MAX_BACKTRACKS + 1):
            with ledger.phase("update"), torch.no_grad():
                for p, p0, piece in zip(params, old, delta.split(sizes), strict=True):
                    p.copy_(p0 + alpha * piece.view(p.shape))
            with ledger.phase("forward_backward"), torch.no_grad():
                new = float(unpack_closure_output(closure())[0].detach().mean())
            new = self.distributed.global_mean(new, samples, "all-reduce of trial loss", ledger)
            if math.isfinite(new) and new <= base:
                break
            if tries < MAX_BACKTRACKS:
                alpha *= BACKTRACK
        accepted = math.isfinite(new) and new <= base
        predicted = predicted_reduction(alpha, g_dot_d, curvature)
        rho = (new - base) / predicted if accepted and predicted < 0 else math.nan
        if not accepted:
            with torch.no_grad():
                for p, p0 in zip(params, old, strict=True):
                    p.copy_(p0)
            ledger.add_event(step, "step-rejected",
                             f"no step size down to {alpha:.3g} lowered the loss ({base:.6g} → "
                             f"{new:.6g}); parameters kept, damping raised", damping=state.damping)
        state.damping = adapt_damping(state.damping, rho, floor=self.damping_floor)
        info.update(step_size=alpha if accepted else 0.0, quadratic_step_size=step_size(
            g_dot_d, curvature, math.inf), rho=None if math.isnan(rho) else rho,
            accepted=accepted, backtracks=tries, loss_after=new, next_damping=state.damping)
        ledger.add_step_rule(info)

    def _block_direction(
        self,
        key: tuple[int, int],
        group: dict[str, Any],
        block: ParamBlock,
        curv: CurvatureBlock | None,
        grad: torch.Tensor,
        extra_reg: float = 0.0,
    ) -> tuple[torch.Tensor, tuple[str, str | None]]:
        """The update direction Δ for one block, and how it was obtained: ``("newton", None)``
        (``("newton", "matrix-free")`` for a matrix-free block), ``("fallback", reason)`` for a
        reported gradient step, ``("stationary", None)`` for a zero gradient."""
        step = key[0]
        grad = grad.to(torch.float64)
        if not bool(grad.any()):
            # nothing to solve: the block is at a stationary point
            return torch.zeros_like(grad), ("stationary", None)
        if curv is None:
            return gradient_fallback(grad, None), ("fallback", "over-budget")
        if not curv.all_finite():
            self.ledger.add_event(step, "non-finite-curvature",
                                  f"curvature of {block.name} is not finite; gradient step",
                                  block=block.name)
            return gradient_fallback(grad, None), ("fallback", "non-finite-curvature")
        newton = ("newton", "matrix-free" if curv.matrix_free else None)
        # The adaptive rule's damping λ adds to the conditioning's reg, in its scheme.
        reg = group["reg"] + extra_reg if extra_reg else group["reg"]
        config = self._conditioning_config(group, reg)
        last_error = ""
        system: LinearSystem | None = None
        for attempt in range(self.max_retries + 1):
            ledger = self.ledger
            try:
                with ledger.phase("conditioning"):
                    system = condition(curv, config)
                with ledger.phase("solve"):
                    # the solve's own work done early: the Gram a Woodbury solve will use, which
                    # the κ analysis shares (docs/method.md §4.8)
                    self.scheduler.prepare(system)
                with ledger.phase("estimation"):
                    analysis = self.scheduler.analyse_if_needed(system)
            except MatrixFreeError as exc:
                ledger.add_event(step, "matrix-free-failed", f"{block.name}: {exc}; gradient step",
                                 block=block.name)
                return gradient_fallback(grad, None), ("fallback", "matrix-free-failed")
            with ledger.phase("scheduling"):
                try:
                    decision = self.scheduler.decide(system, analysis)
                except NoSolverError as exc:
                    ledger.add_event(step, "no-solver", f"{block.name}: {exc}; gradient step",
                                     block=block.name)
                    return gradient_fallback(grad, system), ("fallback", "no-solver")
            result = None
            with ledger.phase("solve"):
                try:
                    result = self.scheduler.run(system, grad, decision, key=(*key, attempt))
                except (SolveError, MatrixFreeError) as exc:
                    last_error = str(exc)
            descent = result is not None and float(grad @ result.x) > 0
            if result is not None and not descent:
                last_error = "not a descent direction (gᵀΔ ≥ 0)"
            record = self.scheduler.record(step=step, block=block.name, system=system,
                                           analysis=analysis, decision=decision, result=result)
            record.retries = attempt
            if analysis.kappa is not None and analysis.kappa.kind == "exact":
                record.kappa_exact = analysis.kappa.value
            elif system.n <= self.exact_kappa_max_n:
                with ledger.diagnostics(), contextlib.suppress(MatrixFreeError):
                    record.kappa_exact = kappa_exact(system.materialize()).value
            if descent:
                ledger.add_record(record)
                return -result.x, newton
            final = attempt == self.max_retries
            record.fallback = "gradient" if final else "retry"
            record.message = last_error
            ledger.add_record(record)
            ledger.add_event(step, "solve-retry" if not final else "gradient-fallback",
                             f"{block.name}: {last_error}", block=block.name, attempt=attempt)
            reg, config = self._more_damping(group, config, reg)
        return gradient_fallback(grad, system), ("fallback", "solve-failed")

    def _more_damping(
        self, group: dict[str, Any], config: ConditioningConfig, reg: float
    ) -> tuple[float, ConditioningConfig]:
        if config.reg_scheme == "none" or reg == 0:
            # No regularization to grow: start from a small relative one.
            return 1e-6, ConditioningConfig(
                reg_scheme="max-entry", reg=1e-6,
                prune_ratio=config.prune_ratio, prune_count=config.prune_count,
            )
        reg = reg * self.damping_growth
        return reg, self._conditioning_config(group, reg)

    def _apply(self, group: dict[str, Any], block: ParamBlock, direction: torch.Tensor) -> None:
        direction = self._shape(group, block, direction)
        for p, piece in zip(block.params, unflatten_block(direction, block), strict=True):
            p.add_(piece, alpha=group["lr"])

    def _shape(self, group: dict[str, Any], block: ParamBlock,
               direction: torch.Tensor) -> torch.Tensor:
        """The block's update direction after the optional clip and momentum."""
        # The momentum buffer lives in the parameters' dtype: load_state_dict casts state to it,
        # and a resumed run must continue bit for bit.
        direction = direction.to(block.params[0].dtype)
        if group["clip"] is not None:
            direction = direction.clamp(-group["clip"], group["clip"])
        if group["momentum"] > 0:
            key = block.params[0]
            buf = self.state[key].get("momentum_buffer")
            if buf is None:
                buf = direction.clone()
            else:
                buf.mul_(group["momentum"]).add_(direction)
            self.state[key]["momentum_buffer"] = buf
            direction = buf
        return direction
