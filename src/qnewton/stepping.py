"""How far a block-diagonal Newton step goes: the step rules of :class:`~qnewton.QNewton`.

Block-diagonal Newton solves every block's system ``A_b x_b = g_b`` on its own; the blocks'
directions then add up while the block-diagonal model ignores the cross terms, and a full step
overshoots (docs/method.md §4.12). Two rules, in :data:`STEP_RULES`:

* ``"fixed"`` — the paper's: θ ← θ + lr·Δ with the fixed regularization ``reg`` and optional
  element-wise clip (what ``qnewton reproduce`` runs);
* ``"adaptive"`` (default) — the block directions stay the paper's ``Δ_b = −A_b⁻¹ g_b``, but

  1. ``A_b`` carries a Levenberg–Marquardt damping λ on top of ``reg`` (the conditioning then
     uses ``reg + λ`` in its scheme: for ``max-entry``, ``(reg + λ)·max|H_b,ij|``), adapted from
     the ratio ρ of the actual to the predicted reduction (Martens 2010 §4.1; Martens & Grosse
     2015 §6.5): ρ < 1/4 → λ·3/2, ρ > 3/4 → λ·2/3, never below its initial value ``damping``
     (on mini-batches the empirical Fisher's model under-predicts the batch's own decrease,
     ρ ≈ 1.5 step after step, and an unbounded decrease fits each batch at the cost of the
     others; pass a tiny ``damping`` to let λ vanish, e.g. for full-batch convex problems);
  2. the step size α for the concatenated update of all blocks minimizes the quadratic model of
     the *whole* curvature C (cross terms included) along Δ (Martens & Grosse 2015 §7):
     ``α* = −gᵀΔ / ΔᵀCΔ``, with ``ΔᵀCΔ`` from one curvature-vector product of the full model
     (:func:`full_quadratic`), capped at ``lr``;
  3. the loss at θ + αΔ is measured with one extra closure evaluation (it gives ρ); a step that
     does not lower the loss (or makes it non-finite) is backtracked (α/4, up to
     :data:`MAX_BACKTRACKS` times) and, failing that, rejected: θ is restored and λ grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from qnewton.curvature import MatrixFreeError, finite_each
from qnewton.curvature.ggn import loss_hessian_sqrt
from qnewton.curvature.products import JacobianProducts
from qnewton.system import LinearSystem
from qnewton.validation import check_choice, check_real

#: The step rules (see the module docstring).
STEP_RULES = ("adaptive", "fixed")

#: What a non-finite loss or gradient does: skipped (up to ``max_nonfinite`` steps in a row,
#: then :class:`NonFiniteError`) or :class:`NonFiniteError` at once.
ON_NONFINITE = ("skip", "raise")

# Levenberg–Marquardt rule of Martens 2010 §4.1 (also Martens & Grosse 2015 §6.5, which uses
# the same thresholds with a gentler factor): thresholds on ρ and the factors applied to λ.
RHO_LOW, RHO_HIGH = 0.25, 0.75
DAMPING_INCREASE, DAMPING_DECREASE = 1.5, 2.0 / 3.0
#: λ stays in this range: below 1e-12 a relative damping is under float64 round-off of
#: max|H|·I; above 1e6 the step is a gradient step of size 1e-6/max|H| and growing λ further
#: cannot help (the caller then reports rejected steps).
DAMPING_MIN, DAMPING_MAX = 1e-12, 1e6
#: Backtracking on a step that did not lower the loss: α ← α·BACKTRACK, at most MAX_BACKTRACKS
#: times (Armijo-style backtracking, Nocedal & Wright 2006 §3.1; 1/4 keeps it to 3 extra
#: forward passes for a 64× shorter step).
BACKTRACK, MAX_BACKTRACKS = 0.25, 3


class NonFiniteError(FloatingPointError):
    """Training produced non-finite values that skipping could not get past; names the step and
    the blocks."""


class ClosureError(ValueError):
    """The closure broke the contract :meth:`QNewton.step` relies on."""


CLOSURE_CONTRACT = (
    "the closure must return per-sample losses of shape (S,) (e.g. "
    "cross_entropy(..., reduction='none')), or (losses, outputs) for curvature='ggn'/'ggn-mc', "
    "built under autograd, and must not call backward() itself: QNewton computes the gradient "
    "and the curvature from the returned losses"
)


def _pieces(vec: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    sizes = [p.numel() for p in params]
    return [v.reshape(p.shape).to(p.dtype) for v, p in zip(vec.split(sizes), params, strict=True)]


def full_quadratic(kind: str, losses: torch.Tensor, outputs: torch.Tensor | None,
                   params: Sequence[torch.Tensor], delta: torch.Tensor) -> float:
    """``ΔᵀCΔ`` for the curvature ``kind`` of the *whole* model (all blocks and the cross terms
    between them), from the closure's retained graph; ``delta`` is flat over ``params``.

    * ``hessian``: ``Δ·∂(gᵀΔ)/∂θ`` (one gradient with its graph, one double backward);
    * ``fisher``: ``(1/S)·‖J Δ‖²`` with ``J = ∂losses/∂θ``;
    * ``ggn``/``ggn-mc``: ``(1/S)·Σ_s ‖R_s J_s Δ‖²`` with ``J = ∂outputs/∂θ`` and ``R_s²`` the
      per-sample loss Hessian (negative eigenvalues clamped, as in the GGN blocks).

    ``J Δ`` comes from the double-backward trick of :class:`~qnewton.curvature.products.
    JacobianProducts` (docs/method.md §4.7).
    """
    params = list(params)
    dtype = torch.float64
    delta = delta.to(dtype)
    if kind == "hessian":
        grads = torch.autograd.grad(losses.mean(), params, create_graph=True, retain_graph=True,
                                    allow_unused=True)
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not live:
            return 0.0
        pieces = _pieces(delta, params)
        hv = torch.autograd.grad([grads[i] for i in live], [params[i] for i in live],
                                 grad_outputs=[pieces[i].to(grads[i].dtype) for i in live],
                                 retain_graph=True, allow_unused=True)
        return float(sum((pieces[i].to(dtype) * h.to(dtype)).sum()
                         for i, h in zip(live, hv, strict=True) if h is not None))
    s = losses.numel()
    if kind == "fisher":
        jv = JacobianProducts(losses, params).jvp(delta).to(dtype)
        return float(jv.square().sum() / s)
    if kind in ("ggn", "ggn-mc"):
        c = outputs.numel() // s
        jv = JacobianProducts(outputs, params).jvp(delta).reshape(s, c).to(dtype)
        roots = loss_hessian_sqrt(losses, outputs, s, c, dtype)
        return float(torch.einsum("sij,sj->si", roots, jv).square().sum() / s)
    raise ValueError(f"no full-model quadratic for curvature {kind!r}")


def check_ggn_coverage(losses: torch.Tensor, outputs: torch.Tensor,
                       params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
    """Refuse a GGN whose losses depend on the parameters other than through ``outputs``.

    The GGN models the loss as a function of the outputs only; a term added to the per-sample
    losses directly (an L2 penalty, say) would be silently missing from the curvature. Compares
    the mean-loss gradient ``grads`` (flat, per parameter) with the one through the outputs,
    ``Jᵀ ∂L/∂outputs`` (one extra backward).
    """
    (d_out,) = torch.autograd.grad(losses.mean(), outputs, retain_graph=True, allow_unused=True)
    if d_out is None:
        raise ClosureError("the losses do not depend on the outputs returned for the GGN; "
                           "return the model outputs the losses are computed from")
    via = torch.autograd.grad(outputs, list(params), grad_outputs=d_out, retain_graph=True,
                              allow_unused=True)
    worst, where = 0.0, -1
    for i, (g, v) in enumerate(zip(grads, via, strict=True)):
        v = torch.zeros_like(g) if v is None else v.reshape(-1).to(g.dtype)
        # relative to the gradient's size, with an absolute floor for a zero gradient (1e-6:
        # well above float32 round-off of a mean over the batch, far below a penalty's share)
        err = float((g - v).abs().max()) / max(float(g.abs().max()), 1e-6)
        if err > worst:
            worst, where = err, i
    if worst > 1e-4:
        raise ClosureError(
            f"curvature='ggn': the losses depend on parameter {where} (in the optimizer's order) "
            f"other than through the returned outputs (gradients differ by {worst:.2g} "
            "relative): the GGN would miss that term's curvature. Put such terms (e.g. an L2 "
            "penalty) in the outputs' loss, use curvature='hessian' or 'fisher', or return the "
            "outputs the whole loss is computed from")


@dataclass
class AdaptiveState:
    """The adaptive rule's state (part of the optimizer's ``state_dict``)."""

    damping: float
    rejected_in_a_row: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"damping": self.damping, "rejected_in_a_row": self.rejected_in_a_row}


def check_step_rule(step_rule: str, damping: float) -> None:
    """Validate the step-rule arguments of :class:`~qnewton.QNewton`."""
    check_choice("step_rule", step_rule, STEP_RULES)
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


def unpack_closure_output(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(losses, outputs)`` from what a closure returned (``outputs`` None for losses alone)."""
    if isinstance(out, tuple | list):
        if len(out) != 2:
            raise ClosureError(f"the closure returned {len(out)} values; {CLOSURE_CONTRACT}")
        losses, outputs = out
    else:
        losses, outputs = out, None
    if not isinstance(losses, torch.Tensor):
        raise ClosureError(f"the closure returned {type(losses).__name__}; {CLOSURE_CONTRACT}")
    if losses.numel() == 0:  # an empty batch: its mean loss is NaN and no curvature exists
        raise ClosureError(f"the closure returned no losses (an empty batch); {CLOSURE_CONTRACT}")
    return losses, outputs


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


def check_finite_params(step: int, block: Any) -> None:
    """Raise :class:`NonFiniteError` if a fixed-rule update made the block's parameters
    non-finite (one sum per tensor, :func:`~qnewton.curvature.finite_each`)."""
    if not all(finite_each(list(block.params))):
        raise NonFiniteError(f"step {step}: the parameters of block {block.name!r} became "
                             "non-finite after the update (step_rule='fixed'): lower lr, "
                             "raise reg or set clip, or use step_rule='adaptive'")
