"""The adaptive step rule: Levenberg–Marquardt damping and a step size from the whole model.

The block directions stay the paper's ``Δ_b = −A_b⁻¹ g_b``, but (docs/method.md §4.12)

1. ``A_b`` carries a Levenberg–Marquardt damping λ on top of ``reg`` (the conditioning then uses
   ``reg + λ`` in its scheme: for ``max-entry``, ``(reg + λ)·max|H_b,ij|``), adapted from the
   ratio ρ of the actual to the predicted reduction (Martens 2010 §4.1; Martens & Grosse 2015
   §6.5): ρ < 1/4 → λ·3/2, ρ > 3/4 → λ·2/3, never below its initial value ``damping`` (on
   mini-batches the empirical Fisher's model under-predicts the batch's own decrease, ρ ≈ 1.5
   step after step, and an unbounded decrease fits each batch at the cost of the others);
2. the step size α for the concatenated update of all blocks minimizes the quadratic model of
   the *whole* curvature C (cross terms included) along Δ (Martens & Grosse 2015 §7):
   ``α* = −gᵀΔ / ΔᵀCΔ``, with ``ΔᵀCΔ`` from the blocks' aligned factor rows
   (:func:`rows_quadratic`), else the kind's :meth:`~qnewton.curvature.CurvatureKind.quadratic`
   (the blocks' own model for a kind without one), capped at ``lr``;
3. the loss at θ + αΔ is measured with one extra closure evaluation (it gives ρ); a step that
   does not lower the loss (or makes it non-finite) is backtracked (α/4, up to
   :data:`MAX_BACKTRACKS` times) and, failing that, rejected: θ is restored and λ grows. The
   trial evaluations leave the model's buffers as they were and run with autograd where the
   closure needs it (:class:`~qnewton.stepping.trial.TrialEvaluator`);
4. the batch regime is read off the losses, at no cost: when a step starts at the loss its
   trial measured (the same data at the same parameters), the problem is full-batch — then λ
   may vanish (Nielsen's update, Nielsen 1999; Moré 1978) and the step becomes Newton's or
   Gauss–Newton's, with its local superlinear convergence; otherwise (mini-batches, dropout)
   λ never falls below its initial value;
5. scale-safe damping: every block is damped by at least ``η·scale`` in absolute units, with
   ``scale`` the largest block's mean diagonal entry and η = :data:`ETA_MINI_BATCH` (or
   :data:`ETA_FULL_BATCH`), so a block whose own curvature is zero (a bias before a BatchNorm)
   moves by at most ‖g_b‖/(η·scale) instead of without bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from qnewton.conditioning import ConditioningConfig
from qnewton.curvature.representation import FactorBlock
from qnewton.stepping.rule import Move, StepContext, StepRule
from qnewton.stepping.trial import TrialEvaluator
from qnewton.validation import check_real

# Levenberg–Marquardt rule of Martens 2010 §4.1 (also Martens & Grosse 2015 §6.5, which uses
# the same thresholds with a gentler factor): thresholds on ρ and the factors applied to λ.
RHO_LOW, RHO_HIGH = 0.25, 0.75
DAMPING_INCREASE, DAMPING_DECREASE = 1.5, 2.0 / 3.0
#: λ stays in this range: below 1e-12 a relative damping is under float64 round-off of
#: max|H|·I; above 1e6 the step is a gradient step of size 1e-6/max|H| and growing λ further
#: cannot help (the caller then reports rejected steps).
DAMPING_MIN, DAMPING_MAX = 1e-12, 1e6
#: The absolute damping floor relative to the curvature scale: on mini-batches a block whose own
#: curvature is below 1e-3 of the model's largest is damped as if it had that much (its step is
#: then at most ‖g_b‖/(1e-3·scale)); full-batch, a round-off-level floor (1e-10) that leaves
#: Newton's convergence alone.
ETA_MINI_BATCH, ETA_FULL_BATCH = 1e-3, 1e-10
#: Full batch: the positive-definiteness target of the systems (relative to their scale,
#: docs/method.md §4.6) is this many units of the losses' round-off, when that is below the
#: conditioning's default 1e-8: κ ≤ N/(1e4·eps) leaves a Cholesky solve (relative error about
#: κ·eps/N) four digits in float64, where the default floor (2e-8 of max|A| on a tanh least-squares
#: fit) exceeds the damping Nielsen's rule asks for and stalls the MSE a decade above the
#: Levenberg–Marquardt reference's. A float32 model keeps the default.
FULL_BATCH_PD_EPS = 1e4
#: Two losses "are the same" (full batch: the step starts where its trial ended) when they agree
#: to this relative tolerance (far above run-to-run round-off of one forward pass, far below
#: the difference between two mini-batches).
SAME_LOSS_RTOL = 1e-9
#: ... or to this many units of the losses' dtype's round-off, if larger: a float32 model's
#: trial (no autograd) and its next closure may take different kernels (attention's fused and
#: math paths) and agree only to ~1e-7, while two mini-batches differ by far more.
SAME_LOSS_EPS = 100
#: The batch regimes the rule tells apart (:meth:`AdaptiveLM.begin`).
REGIMES = ("mini-batch", "full-batch")
#: Backtracking on a step that did not lower the loss: α ← α·BACKTRACK, at most MAX_BACKTRACKS
#: times (Armijo-style backtracking, Nocedal & Wright 2006 §3.1; 1/4 keeps it to 3 extra
#: forward passes for a 64× shorter step).
BACKTRACK, MAX_BACKTRACKS = 0.25, 3
#: Full batch: a step the whole model shortens below this fraction of Δ counts as failed (the
#: damping grows); a Gauss–Newton step on the whole model has α* = 1 + λ·ΔᵀΔ/ΔᵀGΔ ≥ 1, so only
#: a block model that misjudges the curvature along Δ (cross terms, a rank-deficient factor's
#: null space) falls below it.
SHORT_STEP = 0.5


def check_damping(damping: float) -> None:
    """Validate the adaptive rule's initial damping λ."""
    check_real("damping", damping, low=DAMPING_MIN, high=DAMPING_MAX)


def step_size(g_dot_d: float, curvature: float, cap: float) -> float:
    """α* = −gᵀΔ/ΔᵀCΔ, the minimizer of ``α gᵀΔ + ½α² ΔᵀCΔ`` (Martens & Grosse 2015 §7), in
    ``(0, cap]``; ``cap`` where the model has no minimum along Δ (ΔᵀCΔ ≤ 0: an indefinite
    Hessian) or is not finite — the backtracking then decides."""
    if not (math.isfinite(curvature) and curvature > 0 and math.isfinite(g_dot_d)):
        return cap
    return min(cap, -g_dot_d / curvature)


def predicted_reduction(alpha: float, g_dot_d: float, curvature: float) -> float:
    """``M(αΔ) = α gᵀΔ + ½α² ΔᵀCΔ`` (negative for a predicted decrease)."""
    curvature = curvature if math.isfinite(curvature) else 0.0
    return alpha * g_dot_d + 0.5 * alpha * alpha * curvature


def adapt_damping(damping: float, rho: float, floor: float = DAMPING_MIN) -> float:
    """The Levenberg–Marquardt rule (Martens 2010 §4.1): more damping when the quadratic model
    over-promised (ρ < 1/4), less when it predicted well (ρ > 3/4), never below ``floor``."""
    if not math.isfinite(rho) or rho < RHO_LOW:
        damping *= DAMPING_INCREASE
    elif rho > RHO_HIGH:
        damping *= DAMPING_DECREASE
    return min(DAMPING_MAX, max(floor, DAMPING_MIN, damping))


def nielsen_damping(damping: float, nu: float, rho: float) -> tuple[float, float]:
    """Nielsen's update (Nielsen 1999; Madsen, Nielsen & Tingleff 2004 §3.2): after a step with
    ratio ρ, ``λ·max(1/3, 1 − (2ρ − 1)³)`` and ν = 2; after a failed one (ρ not finite or ≤ 0),
    ``λ·ν`` and ν doubles. Smooth in ρ, and λ falls by 3× per step where the model is exact."""
    if math.isfinite(rho) and rho > 0:
        damping *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
        nu = 2.0
    else:
        damping *= nu
        nu *= 2.0
    return min(DAMPING_MAX, max(DAMPING_MIN, damping)), min(nu, 2.0**30)


def aligned_images(ctx: StepContext, moves: Sequence[Move]) -> tuple[torch.Tensor, float] | None:
    """``(U, scale)`` with column b of ``U`` ``(M, K)`` the image ``F_b Δ_b`` of block b's step
    in its factor rows (float64), when the rows are aligned across the blocks
    (:attr:`~qnewton.curvature.CurvatureKind.aligned_rows`: row i of every block is the same
    sample and seed, with one scale), so that ``Δ_bᵀ C Δ_c = scale·U[:, b]·U[:, c]`` with the
    cross-block terms of the curvature the blocks were solved with. ``None`` where the rows do
    not allow it. Terms that bypass the outputs (an L2 penalty) add rows of their own to a block
    (:mod:`qnewton.curvature.bypass`), which align with no other block's: their rows serve one
    block alone, when they hold all of those terms' curvature."""
    if not (ctx.kind.aligned_rows and ctx.model_rows):
        return None
    if ctx.bypass and (len(moves) > 1 or not ctx.bypass_covered):
        return None
    blocks = [ctx.local_blocks.get(move.block) for move in moves]
    if not all(isinstance(block, FactorBlock) for block in blocks):
        return None
    first = blocks[0]
    if any(b.factor_rows != first.factor_rows or b.scale != first.scale for b in blocks):
        return None
    images = [block.apply_factor((move.lr * move.direction).reshape(-1).to(block.dtype))
              .to(torch.float64) for move, block in zip(moves, blocks, strict=True)]
    return torch.stack(images, dim=1), first.scale


def rows_quadratic(ctx: StepContext, moves: Sequence[Move]) -> float | None:
    """``ΔᵀCΔ = scale·‖Σ_b F_b Δ_b‖²`` from the blocks' factor rows (:func:`aligned_images`):
    the whole model's quadratic of the curvature the blocks were solved with, cross terms
    included, for ``Σ_b rows_b × N_b`` multiply-adds instead of a double-backward pass through
    the model. On a step that reuses an earlier step's rows (``curvature_every``) it is that
    curvature's model, so ρ measures how well the reused curvature still predicts and λ answers
    it. ``None`` where the rows do not allow it."""
    found = aligned_images(ctx, moves)
    if found is None:
        return None
    images, scale = found
    return scale * float(images.sum(dim=1).square().sum())


def block_slopes(ctx: StepContext, moves: Sequence[Move]) -> torch.Tensor:
    """``h_b = g_bᵀ(lr·Δ_b)`` per block, float64 ``(K,)``: the slope of the loss along each
    block's step (their sum is ``gᵀΔ``)."""
    return torch.stack([ctx.grads[m.block].to(torch.float64)
                        @ (m.lr * m.direction).reshape(-1).to(torch.float64) for m in moves])


def coupled_scales(ctx: StepContext, moves: Sequence[Move], samples: int
                   ) -> tuple[list[Move], float, torch.Tensor] | None:
    """The blocks' steps rescaled for their coupling: ``a`` minimizes the step's quadratic model
    over ``θ + Σ_b a_b Δ_b``, ``hᵀa + ½aᵀQ̃a``, with ``h_b = g_bᵀΔ_b``, ``Q_bc = Δ_bᵀCΔ_c`` (the
    global curvature's cross-block terms, :func:`aligned_images`, one all-reduce of K² numbers)
    and ``Q̃`` = Q plus each block's own damping term ``−h_b − Q_bb = s_b‖Δ_b‖²`` on its diagonal
    (Δ_b = −(C_b + s_b)⁻¹g_b), clipped to [0, 1]. One block alone gets a = 1, its damped Newton
    step; blocks whose steps overlap in the curvature are shortened, and the others are not
    held back by them, as one step size for all would (block-diagonal steps on a transformer:
    α ≈ 0.14 for every block). Returns ``(scaled moves, ΔᵀCΔ of the scaled step, a)``; ``None``
    (then the caller computes ΔᵀCΔ of the plain step) for one block, rows that are not aligned
    on some rank, or a block whose direction is not a descent direction."""
    if len(moves) < 2 or not (ctx.kind.aligned_rows and ctx.model_rows) or ctx.bypass:
        return None
    h = block_slopes(ctx, moves)
    if not bool((h < 0).all()):
        return None
    with ctx.ledger.phase("curvature"):
        found = aligned_images(ctx, moves)
        k = len(moves)
        local = (torch.full((k, k), math.nan, dtype=torch.float64) if found is None
                 else found[1] * (found[0].T @ found[0]))
    # every rank takes part, so that a rank without aligned rows turns the mean into NaN for all
    q = ctx.comm.global_mean(local, samples, "all-reduce of the blocks' coupling Δ_bᵀCΔ_c",
                             ctx.ledger)
    if not bool(torch.isfinite(q).all()):
        return None
    damped = q + torch.diag((-h - q.diagonal()).clamp(min=0.0))
    chol, info = torch.linalg.cholesky_ex(damped)
    if int(info) != 0:
        return list(moves), float(q.sum()), torch.ones(k, dtype=torch.float64)
    a = torch.cholesky_solve(-h.unsqueeze(1), chol).squeeze(1).clamp(min=0.0, max=1.0)
    scaled = [Move(m.block, m.lr * float(ab), m.direction) for m, ab in zip(moves, a, strict=True)]
    return scaled, float(a @ q @ a), a


def whole_model_quadratic(ctx: StepContext, moves: Sequence[Move], params: list[torch.Tensor],
                          delta: torch.Tensor) -> float:
    """``ΔᵀCΔ`` of this rank's samples: from the aligned rows (:func:`rows_quadratic`), else
    the kind's whole-model form, else the sum of the blocks' own ``Δ_bᵀC_bΔ_b`` (no cross
    terms) over the blocks that have a curvature block."""
    with ctx.ledger.phase("curvature"), torch.enable_grad():
        value = rows_quadratic(ctx, moves)
        if value is None:
            value = ctx.kind.quadratic(ctx.losses, ctx.outputs, params, delta, bypass=ctx.bypass)
        if value is None:
            value = 0.0
            for move in moves:
                block = ctx.local_blocks.get(move.block)
                if block is not None:
                    d = (move.lr * move.direction).reshape(-1).to(torch.float64)
                    value += float(d @ block.matvec(d.to(block.dtype)).to(torch.float64))
    return value


class AdaptiveLM(StepRule):
    """Levenberg–Marquardt damping with a step size from the whole model (module docstring).

    Args:
        damping: the initial and smallest λ, in [:data:`DAMPING_MIN`, :data:`DAMPING_MAX`].
    """

    name = "adaptive"

    def __init__(self, damping: float = 1.0) -> None:
        check_damping(damping)
        self.floor = float(damping)  # mini-batches: λ adapts upwards from here
        self._damping = float(damping)
        self.rejected_in_a_row = 0
        self.regime = REGIMES[0]  # until a step starts where its trial ended
        self.nu = 2.0
        self.last_trial_loss: float | None = None
        self.loss_eps = 0.0  # round-off unit of the losses' dtype (known after a step)
        self.scale = 0.0
        self.trial = TrialEvaluator()
        #: the last step was rejected — no step size lowered the loss its quadratic model
        #: promised to lower (ρ ≤ 0) —, so curvature reused across steps has gone stale
        #: (:meth:`wants_fresh_curvature`)
        self.stale = False

    @property
    def damping(self) -> float:
        return self._damping

    @property
    def shift(self) -> float:
        eta = ETA_FULL_BATCH if self.regime == "full-batch" else ETA_MINI_BATCH
        return eta * self.scale if math.isfinite(self.scale) else 0.0

    @property
    def min_eig_fraction(self) -> float | None:
        if self.regime != "full-batch" or not self.loss_eps:
            return None
        default = ConditioningConfig.min_eig_fraction
        return min(default, FULL_BATCH_PD_EPS * self.loss_eps)

    def _same_loss(self, loss: float) -> bool | None:
        """Whether ``loss`` is the loss the last trial measured (the same data at the same
        parameters: a full batch); ``None`` when there is nothing to compare."""
        last = self.last_trial_loss
        if last is None or not math.isfinite(loss):
            return None
        rtol = max(SAME_LOSS_RTOL, SAME_LOSS_EPS * self.loss_eps)
        return abs(loss - last) <= rtol * max(abs(loss), abs(last), 1e-300)

    def wants_fresh_curvature(self, loss: float) -> bool:
        """A build, not reused blocks, after a step whose reduction ratio said the model went
        stale (rejected: ρ ≤ 0, :attr:`stale`), and on a full batch, where Newton's local
        convergence needs the curvature at the current point (docs/method.md §4.7). Not after
        ρ < 1/4 on mini-batches: there a reused model's ρ mostly measures how the new batch
        differs from the one it was built on, which the damping answers (docs/method.md §4.7)."""
        return self.stale or bool(self._same_loss(loss))

    def begin(self, step: int, loss: float, curvature_scale: float) -> None:
        """Tell the regime from the loss this step starts at, and take the curvature scale."""
        self.scale = max(0.0, curvature_scale)
        same = self._same_loss(loss)
        if same is not None:
            self.regime = REGIMES[1] if same else REGIMES[0]
            if not same:
                self._damping = max(self._damping, self.floor)

    def state_dict(self) -> dict[str, Any]:
        return {"damping": self._damping, "rejected_in_a_row": self.rejected_in_a_row,
                "regime": self.regime, "nu": self.nu, "last_trial_loss": self.last_trial_loss,
                "loss_eps": self.loss_eps, "trial_needs_grad": self.trial.needs_grad,
                "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._damping = float(state["damping"])
        self.rejected_in_a_row = int(state.get("rejected_in_a_row", 0))
        # checkpoints of earlier versions: the mini-batch regime they always ran in
        self.regime = state.get("regime", REGIMES[0])
        self.nu = float(state.get("nu", 2.0))
        self.last_trial_loss = state.get("last_trial_loss")
        self.loss_eps = float(state.get("loss_eps", 0.0))
        self.trial.needs_grad = bool(state.get("trial_needs_grad", False))
        self.stale = bool(state.get("stale", False))

    @staticmethod
    def _below_roundoff(predicted: float, ctx: StepContext) -> bool:
        """Whether the predicted change ``predicted`` (≤ 0 for a decrease) is within
        :data:`SAME_LOSS_EPS` units of the loss's round-off: a trial could not resolve it."""
        if not ctx.losses.is_floating_point():
            return False
        eps = torch.finfo(ctx.losses.dtype).eps
        return -predicted <= SAME_LOSS_EPS * eps * abs(float(ctx.loss))

    def apply(self, ctx: StepContext, moves: Sequence[Move]) -> dict[str, Any]:
        """θ ← θ + α·Δ with α from the whole model's quadratic model, backtracked until the
        loss falls; λ adapted from ρ."""
        ledger = ctx.ledger
        info: dict[str, Any] = {"step": ctx.step, "damping": self._damping,
                                "regime": self.regime, "shift": self.shift}
        self.last_trial_loss = None
        if not moves:
            info.update(step_size=0.0, rho=None, accepted=False, backtracks=0)
            return info
        params = [p for m in moves for p in m.block.params]
        samples = ctx.losses.numel()
        coupled = coupled_scales(ctx, moves, samples)
        if coupled is not None:
            moves, curvature, scales = coupled
            info["block_scales"] = [round(float(scales.min()), 4), round(float(scales.mean()), 4)]
        delta = torch.cat([(m.lr * m.direction).reshape(-1) for m in moves])
        g_dot_d = float(block_slopes(ctx, moves).sum())
        if not g_dot_d < 0:  # every block is stationary: nothing to do
            info.update(step_size=0.0, rho=None, accepted=False, backtracks=0)
            return info
        if coupled is None:
            curvature = whole_model_quadratic(ctx, moves, params, delta)
            curvature = ctx.comm.global_mean(curvature, samples, "all-reduce of ΔᵀCΔ", ledger)
        alpha = step_size(g_dot_d, curvature, 1.0)
        if self._below_roundoff(predicted_reduction(alpha, g_dot_d, curvature), ctx):
            # a minimum to round-off: no trial could tell a decrease from noise, and rejecting
            # the noise would raise the damping at every further step (×ν, ν doubling)
            self.last_trial_loss = float(ctx.loss)  # θ unchanged: the next step starts here
            info.update(step_size=0.0, rho=None, accepted=False, backtracks=0, stationary=True,
                        next_damping=self._damping)
            ledger.add_step_rule(info)
            return info
        old = [p.detach().clone() for p in params]
        sizes = [p.numel() for p in params]
        base = float(ctx.loss)
        new = math.nan
        for tries in range(MAX_BACKTRACKS + 1):
            with ledger.phase("update"), torch.no_grad():
                for p, p0, piece in zip(params, old, delta.split(sizes), strict=True):
                    p.copy_(p0 + alpha * piece.view(p.shape))
            with ledger.phase("forward_backward"):
                new = self.trial(ctx.closure)
            new = ctx.comm.global_mean(new, samples, "all-reduce of trial loss", ledger)
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
            ledger.add_event(ctx.step, "step-rejected",
                             f"no step size down to {alpha:.3g} lowered the loss ({base:.6g} → "
                             f"{new:.6g}); parameters kept, damping raised",
                             damping=self._damping)
        if self.regime == "full-batch":
            # a step that had to be shortened — by backtracking, or by the whole model's
            # curvature along Δ (α* < SHORT_STEP: the blocks' damped model, from which Δ came,
            # misjudges the curvature along it, e.g. a rank-deficient factor's null space) — is
            # a failed Levenberg–Marquardt step, even where the shorter one was kept: the
            # damping, not the length, must give way
            shortened = tries > 0 or step_size(g_dot_d, curvature, math.inf) < SHORT_STEP
            self._damping, self.nu = nielsen_damping(self._damping, self.nu,
                                                     math.nan if shortened else rho)
        else:
            self._damping = adapt_damping(self._damping, rho, floor=self.floor)
        self.stale = not accepted  # no α lowered the loss: the model's promise failed (ρ ≤ 0)
        self.last_trial_loss = new if accepted else base  # where the next step starts
        self.loss_eps = (torch.finfo(ctx.losses.dtype).eps if ctx.losses.is_floating_point()
                         else 0.0)
        info.update(step_size=alpha if accepted else 0.0, quadratic_step_size=step_size(
            g_dot_d, curvature, math.inf), rho=None if math.isnan(rho) else rho,
            accepted=accepted, backtracks=tries, loss_after=new, next_damping=self._damping)
        ledger.add_step_rule(info)
        return info
