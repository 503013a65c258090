"""The closure contract of :meth:`QNewton.step`, and the errors a step raises."""

from __future__ import annotations

from typing import Any

import torch

from qnewton.curvature import ClosureError, finite_each

#: What a non-finite loss or gradient does: skipped (up to ``max_nonfinite`` steps in a row,
#: then :class:`NonFiniteError`) or :class:`NonFiniteError` at once.
ON_NONFINITE = ("skip", "raise")

CLOSURE_CONTRACT = (
    "the closure must return per-sample losses of shape (S,) (e.g. "
    "cross_entropy(..., reduction='none')), or (losses, outputs) for curvature='ggn'/'ggn-mc', "
    "built under autograd, and must not call backward() itself: QNewton computes the gradient "
    "and the curvature from the returned losses"
)

__all__ = ["CLOSURE_CONTRACT", "ON_NONFINITE", "ClosureError", "NonFiniteError",
           "check_finite_params", "unpack_closure_output"]


class NonFiniteError(FloatingPointError):
    """Training produced non-finite values that skipping could not get past; names the step and
    the blocks."""


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


def check_finite_params(step: int, block: Any) -> None:
    """Raise :class:`NonFiniteError` if an update made the block's parameters non-finite (one
    sum per tensor, :func:`~qnewton.curvature.finite_each`)."""
    if not all(finite_each(list(block.params))):
        raise NonFiniteError(f"step {step}: the parameters of block {block.name!r} became "
                             "non-finite after the update (step_rule='fixed'): lower lr, "
                             "raise reg or set clip, or use step_rule='adaptive'")
