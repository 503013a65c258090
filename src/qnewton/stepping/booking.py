"""Booking a step's block outcomes: the one place where solves reach the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from qnewton.accounting import Ledger
from qnewton.curvature import CurvatureResult, ParamBlock, unflatten_block
from qnewton.stepping.block_solve import BlockOutcome
from qnewton.stepping.rule import Move


def shape_direction(group: dict[str, Any], state: dict[str, Any], block: ParamBlock,
                    direction: torch.Tensor) -> torch.Tensor:
    """The block's update direction after the group's optional clip and momentum (the buffer
    kept in ``state``, the state of the block's first parameter)."""
    # The momentum buffer lives in the parameters' dtype: load_state_dict casts state to it,
    # and a resumed run must continue bit for bit.
    direction = direction.to(block.params[0].dtype)
    if group["clip"] is not None:
        direction = direction.clamp(-group["clip"], group["clip"])
    if group["momentum"] > 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = direction.clone()
        else:
            buf.mul_(group["momentum"]).add_(direction)
        state["momentum_buffer"] = buf
        direction = buf
    return direction


def book_outcomes(ledger: Ledger, step: int, jobs: Sequence[tuple[dict[str, Any], ParamBlock]],
                  outcomes: Sequence[BlockOutcome], state: Any) -> list[Move]:
    """Book every block's outcome (seconds, records, events, how it moved) in block order, and
    return the moves of the finite directions, shaped (``state``: the optimizer's per-parameter
    state). A non-finite direction is reported and not applied."""
    moves = []
    with ledger.phase("update"), torch.no_grad():
        for (group, block), outcome in zip(jobs, outcomes, strict=True):
            ledger.add_seconds(outcome.clock)
            for record in outcome.records:
                ledger.add_record(record)
            ledger.events.extend(outcome.events)
            if not bool(torch.isfinite(outcome.direction).all()):
                ledger.add_event(step, "non-finite-direction",
                                 f"{block.name}: non-finite step not applied", block=block.name)
                ledger.add_update(block.name, block.numel, "not-applied")
                continue
            ledger.add_update(block.name, block.numel, outcome.how, reason=outcome.reason,
                              matrix_free=outcome.reason == "matrix-free")
            shaped = shape_direction(group, state[block.params[0]], block, outcome.direction)
            moves.append(Move(block, group["lr"], shaped))
    return moves


def book_gradients(ledger: Ledger, step: int, blocks: Sequence[ParamBlock],
                   result: CurvatureResult) -> None:
    """Set each parameter's ``.grad`` to the step's (global) mean-loss gradient, and report the
    blocks over the memory budget (skipped, or solved matrix-free)."""
    with torch.no_grad():
        for b, g in zip(blocks, result.grads, strict=True):
            for p, piece in zip(b.params, unflatten_block(g, b), strict=True):
                p.grad = piece.to(p.dtype).clone()
    for name, reason in result.skipped.items():
        ledger.add_event(step, "block-over-budget", reason, block=name)
    for name, reason in result.matrix_free.items():
        ledger.add_event(step, "block-matrix-free",
                         f"{reason}; solved matrix-free (curvature-vector products, CG)",
                         block=name)
