"""The protocol every curvature kind implements (one class per kind, one file each)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from qnewton.curvature.errors import OUTPUTS_NOT_USED as OUTPUTS_NOT_USED
from qnewton.curvature.errors import ClosureError as ClosureError
from qnewton.curvature.memory import element_size
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.representation import CurvatureBlock

if TYPE_CHECKING:
    from qnewton.curvature.config import CurvatureConfig
    from qnewton.curvature.products import ProductContext


@dataclass
class BuildInputs:
    """What a kind needs to build its blocks from one evaluated closure.

    Attributes:
        losses: per-sample losses ``(S,)`` (any shape for kinds without per-sample structure).
        outputs: model outputs reshaping to ``(S, C)`` (kinds with :attr:`CurvatureKind.
            needs_outputs`), else ``None``.
        blocks: the parameter blocks, in order.
        grads: per block, the gradient tensors of the mean loss (with a graph when the kind
            asked for :attr:`CurvatureKind.needs_gradient_graph`).
        built: per block, whether to build it (``False``: over the memory budget).
        num_samples: S. num_outputs: C (1 when there are no outputs).
        config: the :class:`CurvatureConfig`.
        samples: sorted indices of a curvature subset of k samples, or ``None`` (all S): factor
            kinds then build k (or k·C) rows with scale 1/k; ``grads`` are then the subset's.
        notes, covered: filled by the build — ``{block name: note}`` for blocks with a loss term
            that bypasses the outputs (GGN), and the names of those whose term's curvature is in
            the block (:mod:`qnewton.curvature.bypass`).
        paths: filled by factor kinds: ``{block name: the path its per-sample rows took}``
            (:data:`qnewton.curvature.per_sample.engine.PATHS`).
    """

    losses: torch.Tensor
    outputs: torch.Tensor | None
    blocks: Sequence[ParamBlock]
    grads: Sequence[Sequence[torch.Tensor]]
    built: Sequence[bool]
    num_samples: int
    num_outputs: int
    config: CurvatureConfig
    samples: torch.Tensor | None = None
    notes: dict[str, str] = field(default_factory=dict)
    covered: set[str] = field(default_factory=set)
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def curvature_samples(self) -> int:
        """k, the number of samples the curvature averages over."""
        return self.num_samples if self.samples is None else self.samples.numel()


class CurvatureKind(ABC):
    """One kind of curvature: how to size, describe and build its blocks.

    Besides building its blocks, a kind owns everything else that depends on what it is: its
    matrix-free form for blocks over the memory budget (:meth:`matrix_free`), the whole model's
    quadratic ``ΔᵀCΔ`` the adaptive step rule needs (:meth:`quadratic`), and the checks of a
    closure it could otherwise model silently wrong (:meth:`check_closure`). Adding a kind is
    one file with one subclass and one line in :mod:`qnewton.curvature.kinds`.

    Attributes:
        name: registry name. psd: whether its blocks are positive semidefinite.
        needs_outputs: the closure must return ``(losses, outputs)``.
        per_sample: the losses must be per-sample, shape ``(S,)``.
        needs_gradient_graph: the mean-loss gradient must keep its graph (second derivatives).
        has_matrix_free: :meth:`matrix_free` gives a block (else a block over budget is skipped,
            and takes a reported gradient step).
        aligned_rows: the factor blocks of one build have the same rows — row i of every block
            is the same sample (and seed), with one ``scale`` — so the whole model's ``ΔᵀCΔ``,
            cross terms included, is ``scale·‖Σ_b F_b Δ_b‖²`` from the rows already built
            (:func:`~qnewton.stepping.adaptive.whole_model_quadratic`), without
            :meth:`quadratic`'s double-backward pass.
    """

    name: str
    psd: bool
    needs_outputs: bool = False
    per_sample: bool = True
    needs_gradient_graph: bool = False
    has_matrix_free: bool = False
    aligned_rows: bool = False
    #: what ``grouping="auto"`` resolves to for this kind (``None``: by size,
    #: :func:`~qnewton.curvature.params.auto_grouping`); K-FAC factors one layer per block
    auto_grouping: str | None = None

    @abstractmethod
    def stored_elements(self, n: int, num_samples: int, num_outputs: int) -> int:
        """Elements of one block of N parameters as it will be stored."""

    def block_bytes(self, n: int, num_samples: int, num_outputs: int = 1,
                    dtype: torch.dtype = torch.float64) -> int:
        """Memory in bytes of one block as it will be stored, known before building it."""
        return self.stored_elements(n, num_samples, num_outputs) * element_size(dtype)

    @abstractmethod
    def storage(self, n: int, num_samples: int, num_outputs: int, dtype_name: str) -> str:
        """How a block is stored, for budget messages (``"as a dense 10×10 float64 matrix"``)."""

    @abstractmethod
    def budget_advice(self, num_samples: int, num_outputs: int) -> str:
        """What a user can do when a block is over the memory budget."""

    @abstractmethod
    def build(self, inputs: BuildInputs) -> list[CurvatureBlock | None]:
        """One block per parameter block (``None`` where ``inputs.built`` is ``False``)."""

    def substitute(self, num_samples: int, num_outputs: int, config: CurvatureConfig
                   ) -> tuple[str, str] | None:
        """``(kind to build instead, why)`` when this kind would cost far more than an
        equivalent one for this batch (recorded per step), else ``None`` (default)."""
        return None

    def matrix_free(self, block: ParamBlock, grads: Sequence[torch.Tensor],
                    ctx: ProductContext) -> CurvatureBlock:
        """The block as curvature-vector products on the closure's graph (nothing of its size
        stored), for a block over the memory budget; ``grads`` are its mean-loss gradient pieces
        (with their graph when :attr:`needs_gradient_graph`). Only when :attr:`has_matrix_free`."""
        raise NotImplementedError(f"curvature {self.name!r} has no matrix-free form")

    def quadratic(self, losses: torch.Tensor, outputs: torch.Tensor | None,
                  params: Sequence[torch.Tensor], delta: torch.Tensor,
                  bypass: bool = False) -> float | None:
        """``ΔᵀCΔ`` of the *whole* model (every block and the cross terms between them) from the
        closure's retained graph; ``delta`` is flat over ``params``, in their order. ``bypass``:
        the build found loss terms that bypass the outputs (their curvature is in the blocks).
        ``None``: no whole-model form, and the step rule uses the blocks' own model."""
        return None

    def check_closure(self, losses: torch.Tensor, outputs: torch.Tensor | None,  # noqa: B027
                      params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
        """Raise :class:`ClosureError` if this closure would be modeled silently wrong; run once
        per optimizer, on the first step's own graph (``grads``: flat mean-loss gradient per
        parameter). Default: nothing to check."""
