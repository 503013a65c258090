"""Stepping (pipeline stage 8): from curvature blocks and gradients to moved parameters.

* :mod:`~qnewton.stepping.block_solve` — :func:`solve_block`, one block's direction as a pure
  function returning a :class:`BlockOutcome` (records, events and seconds included);
* :mod:`~qnewton.stepping.rule` — the :class:`StepRule` protocol: how far to move;
  :mod:`~qnewton.stepping.fixed` (the paper's θ ← θ + lr·Δ) and
  :mod:`~qnewton.stepping.adaptive` (Levenberg–Marquardt damping, whole-model step size), in
  :data:`STEP_RULES` (:mod:`~qnewton.stepping.rules`);
* :mod:`~qnewton.stepping.booking` — the outcomes booked in the ledger, the directions shaped
  (clip, momentum) into the moves the rule applies;
* :mod:`~qnewton.stepping.guard` — non-finite losses and gradients skipped, then refused;
* :mod:`~qnewton.stepping.closure` — the closure contract and the errors a step raises.
"""

from qnewton.stepping.adaptive import (
    BACKTRACK,
    DAMPING_MAX,
    DAMPING_MIN,
    MAX_BACKTRACKS,
    AdaptiveLM,
    adapt_damping,
    predicted_reduction,
    step_size,
)
from qnewton.stepping.block_solve import (
    BlockJob,
    BlockOutcome,
    SolvePipeline,
    gradient_fallback,
    solve_block,
)
from qnewton.stepping.booking import book_gradients, book_outcomes, shape_direction
from qnewton.stepping.closure import (
    CLOSURE_CONTRACT,
    ON_NONFINITE,
    ClosureError,
    NonFiniteError,
    check_finite_params,
    unpack_closure_output,
)
from qnewton.stepping.fixed import FixedStep
from qnewton.stepping.guard import NonFiniteGuard
from qnewton.stepping.rule import Move, StepContext, StepRule
from qnewton.stepping.rules import STEP_RULES, check_step_rule

__all__ = [
    "BACKTRACK", "CLOSURE_CONTRACT", "DAMPING_MAX", "DAMPING_MIN", "MAX_BACKTRACKS",
    "ON_NONFINITE", "STEP_RULES", "AdaptiveLM", "BlockJob", "BlockOutcome", "ClosureError",
    "FixedStep", "Move", "NonFiniteError", "NonFiniteGuard", "SolvePipeline", "StepContext",
    "StepRule", "book_gradients", "book_outcomes", "shape_direction",
    "adapt_damping", "check_finite_params", "check_step_rule", "gradient_fallback",
    "predicted_reduction", "solve_block", "step_size", "unpack_closure_output",
]
