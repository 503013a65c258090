"""The paper's step rule: θ ← θ + lr·Δ with the fixed regularization ``reg``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from qnewton.curvature import unflatten_block
from qnewton.stepping.closure import check_finite_params
from qnewton.stepping.rule import Move, StepContext, StepRule


class FixedStep(StepRule):
    """θ_b ← θ_b + lr·Δ_b for every block (what ``qnewton reproduce`` runs, with the optional
    element-wise clip). No extra damping, no extra closure evaluation; a step that makes a
    block's parameters non-finite raises :class:`~qnewton.stepping.NonFiniteError`."""

    name = "fixed"
    #: the paper mode's preset (with lr 0.3 and clip 0.1; tuned on digits, docs/method.md §4.12)
    default_reg = 5e-3

    def apply(self, ctx: StepContext, moves: Sequence[Move]) -> dict[str, Any] | None:
        with ctx.ledger.phase("update"), torch.no_grad():
            for move in moves:
                pieces = unflatten_block(move.direction, move.block)
                for p, piece in zip(move.block.params, pieces, strict=True):
                    p.add_(piece, alpha=move.lr)
                check_finite_params(ctx.step, move.block)
        return None
