"""The protocol every step rule implements: how far the optimizer moves along the directions.

Block-diagonal Newton solves each block's system on its own; the blocks' directions then add up
while the block-diagonal model ignores the cross terms, so how far to go is a decision of its own
(docs/method.md §4.12). A step rule owns that decision, its state (:meth:`StepRule.state_dict`)
and its per-step record; adding one is one file with one subclass and one line in
:mod:`qnewton.stepping.rules`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from qnewton.accounting import Ledger
from qnewton.curvature import CurvatureBlock, CurvatureKind, ParamBlock


class GlobalMean(Protocol):
    """The sample-weighted mean over ranks of a per-rank mean (the value itself in one process):
    what a step rule needs of the communicator (:class:`qnewton.distributed.StepPath`)."""

    def global_mean(self, value: Any, samples: int, what: str, ledger: Ledger) -> Any:
        """``value``: a float, or a float64 tensor (averaged entry by entry)."""


@dataclass
class Move:
    """One block's proposed update: ``lr`` (the group's) and the shaped direction (after clip and
    momentum, in the parameters' dtype, not yet scaled by ``lr``)."""

    block: ParamBlock
    lr: float
    direction: torch.Tensor


@dataclass
class StepContext:
    """What a step rule may use at one step.

    Attributes:
        step: the optimizer step. closure: re-evaluates the losses (trial evaluations).
        losses, outputs: the step's closure output, with its graph retained. loss: their mean
            over the global batch (before the update).
        grads: per block, the global mean-loss gradient, flat float64.
        kind: the curvature kind (its whole-model quadratic, :meth:`CurvatureKind.quadratic`).
        local_blocks: per block, this rank's curvature block (``None`` where none was built), for
            a kind without a whole-model quadratic.
        bypass: the build found loss terms that bypass the outputs (the GGN's quadratic adds
            their curvature). bypass_covered: every such term's curvature is in its block's
            rows (:mod:`qnewton.curvature.bypass`).
        model_rows: ``local_blocks`` are rows the kind itself built (not substituted by another
            kind; possibly at an earlier step or from a subset of the batch: the curvature the
            blocks' systems were solved with), so a kind with
            :attr:`~qnewton.curvature.CurvatureKind.aligned_rows` gives the whole model's
            ``ΔᵀCΔ`` of that curvature from their rows.
    """

    step: int
    closure: Callable[[], Any]
    losses: torch.Tensor
    outputs: torch.Tensor | None
    loss: torch.Tensor
    grads: dict[ParamBlock, torch.Tensor]
    kind: CurvatureKind
    local_blocks: dict[ParamBlock, CurvatureBlock | None]
    comm: GlobalMean
    ledger: Ledger
    bypass: bool = False
    model_rows: bool = False
    bypass_covered: bool = False


class StepRule(ABC):
    """How far to move along the block directions, with the state that decides it.

    Attributes:
        name: registry name (``step_rule=``).
        default_reg: the conditioning's ``reg`` when none is given.
    """

    name: str
    #: ``reg`` when the user gives none (the conditioning's fixed regularization).
    default_reg: float = 0.0
    #: the batch regime the rule has read off the losses (``"mini-batch"`` or
    #: ``"full-batch"``; a rule that does not read it takes mini-batches)
    regime: str = "mini-batch"

    @property
    def damping(self) -> float:
        """Extra regularization for the blocks' systems, added to ``reg`` in its scheme (0: the
        conditioning's own ``reg`` alone)."""
        return 0.0

    @property
    def shift(self) -> float:
        """An absolute diagonal shift for every block's system (units of the curvature; 0:
        none), the scale-safe part of the damping (docs/method.md §4.12)."""
        return 0.0

    @property
    def min_eig_fraction(self) -> float | None:
        """The conditioning's positive-definiteness target for this step's systems, relative to
        their scale (``None``: the conditioning's default, docs/method.md §4.6)."""
        return None

    def wants_fresh_curvature(self, loss: float) -> bool:
        """Whether the step starting at global mean loss ``loss`` should build its curvature
        rather than reuse kept blocks (``curvature_every`` > 1); default: never asks."""
        return False

    def begin(self, step: int, loss: float, curvature_scale: float) -> None:  # noqa: B027
        """Called before the blocks are solved, with the step's global mean loss and the
        curvature's scale (the largest block's mean diagonal entry, over the global batch)."""

    @abstractmethod
    def apply(self, ctx: StepContext, moves: Sequence[Move]) -> dict[str, Any] | None:
        """Move the parameters; returns this step's record (``None``: nothing to record)."""

    def state_dict(self) -> dict[str, Any]:
        """The rule's state, for the optimizer's ``state_dict`` (empty: stateless)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless default
        """Restore :meth:`state_dict`'s output."""
