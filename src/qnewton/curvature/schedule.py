"""When to build curvature, and from how many samples: subsampling and reuse across steps.

* **Curvature mini-batch** (Martens 2010, "Deep learning via Hessian-free optimization", §4.2;
  Byrd, Chin, Neveitt, Nocedal 2011): the curvature is built from a seeded random subset of
  ``batch`` of the S samples, the gradient always from all S. The subset of a step is a function
  of ``(seed, step, S, batch)`` only (:func:`curvature_subset`), so a run is reproducible and a
  resumed run draws the same subsets.
* **Reuse** (K-FAC, Martens & Grosse 2015, §8, recomputes its inverses every T₃ steps): with
  ``every = T`` the curvature blocks built at a step serve at most T steps, each with its own
  fresh full-batch gradient; a step builds afresh earlier when the step rule asks for it
  (``fresh``: the adaptive rule does after a step whose reduction ratio said the reused model
  went stale, and on full-batch problems, where Newton's convergence needs the curvature at the
  current point). The kept blocks and the step they were built at are this object's
  :meth:`~CurvatureSchedule.state_dict` (:mod:`~qnewton.curvature.snapshot`), so a resumed run
  continues bit for bit. Matrix-free blocks hold nothing but the graph of the step that built
  them, which the parameter update invalidates, so they are rebuilt every step (they cost nothing
  until a product is taken).

See docs/method.md §4.7, "Curvature subsampling and reuse".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from qnewton.curvature.compute import CurvatureResult, compute_curvature, mean_loss_gradients
from qnewton.curvature.config import CurvatureConfig
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample.recording import release_recording
from qnewton.curvature.representation import FactorBlock
from qnewton.curvature.snapshot import result_from_state, result_state
from qnewton.validation import check_int

#: Why a step builds curvature: every step (``every`` = 1), nothing kept yet (the first step, or
#: a new parameter block), the kept blocks are ``every`` steps old, or the step rule asked.
BUILD_REASONS = ("every-step", "none-kept", "age", "step-rule")

#: Mixed with the seed so that subset draws do not repeat other seeded streams of a run.
_SUBSET_STREAM = 0x5EED_C0DE


def curvature_subset(num_samples: int, size: int | None, seed: int,
                     step: int) -> torch.Tensor | None:
    """The sorted indices of step ``step``'s curvature subset: ``size`` of ``num_samples``
    drawn without replacement by a generator seeded with ``(seed, step)``; ``None`` (all
    samples) when ``size`` is ``None`` or at least ``num_samples``."""
    check_int("num_samples", num_samples, 1)
    check_int("step", step, 0)
    if size is None or size >= num_samples:
        return None
    check_int("curvature_batch", size, 1)
    mixed = ((int(seed) * 1_000_003 + step) ^ _SUBSET_STREAM) & 0x7FFF_FFFF_FFFF_FFFF
    gen = torch.Generator().manual_seed(mixed)
    return torch.randperm(num_samples, generator=gen)[:size].sort().values


class CurvatureSchedule:
    """Builds a step's curvature (:func:`~qnewton.curvature.compute_curvature`) from a subset of
    ``batch`` samples, or reuses the blocks built within the last ``every`` steps.

    Attributes:
        batch: samples per curvature (``None``: all of each step's samples).
        every: the most steps one build serves (1: build every step).
        seed: seed of the subset draws.
        computed, reused: how many steps built curvature and how many reused it.
        built_at: the step the kept blocks were built at (``None``: none kept).
        last_reason: why the last step built (:data:`BUILD_REASONS`) or ``"reused"``.
    """

    def __init__(self, batch: int | None = None, every: int = 1, seed: int = 0) -> None:
        if batch is not None:
            check_int("curvature_batch", batch, 1)
        self.batch = batch
        self.every = check_int("curvature_every", every, 1)
        self.seed = check_int("seed", seed)  # any integer, as QNewton's seed
        self.computed = 0
        self.reused = 0
        self.built_at: int | None = None
        self.last_reason: str | None = None
        self._cache: CurvatureResult | None = None
        #: names of the blocks solved matrix-free on the global batch at the last step (across
        #: ranks a block whose local rows fit the budget can be over it globally): like a local
        #: matrix-free block, rebuilt at every step, so that 1 and N ranks solve the same system
        self.rebuilt: set[str] = set()

    def reason(self, step: int, fresh: bool = False) -> str | None:
        """Why step ``step`` builds curvature (one of :data:`BUILD_REASONS`), or ``None``: it
        reuses the kept blocks. ``fresh``: the step rule asks for a build."""
        if self.every == 1:
            return "every-step"
        if self._cache is None:
            return "none-kept"
        if step - self.built_at >= self.every:
            return "age"
        return "step-rule" if fresh else None

    def state_dict(self) -> dict[str, Any]:
        """The kept blocks (as plain data) and the step they were built at."""
        kept = None if self._cache is None else result_state(self._cache)
        return {"built_at": self.built_at, "kept": kept, "computed": self.computed,
                "reused": self.reused}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.built_at = state["built_at"]
        self.computed, self.reused = int(state["computed"]), int(state["reused"])
        kept = state["kept"]
        self._cache = None if kept is None else result_from_state(kept, [], None)

    def forget(self) -> None:
        """Drop the kept blocks (the next step builds)."""
        self._cache, self.built_at = None, None

    def __call__(self, losses: torch.Tensor, blocks: Sequence[ParamBlock],
                 config: CurvatureConfig, outputs: torch.Tensor | None, step: int,
                 over_budget: str, fresh: bool = False) -> tuple[CurvatureResult, bool]:
        """``(result, reused)`` for step ``step``: fresh curvature, or the kept blocks with
        this step's full-batch gradients (and fresh matrix-free blocks). ``fresh``: the step
        rule asks for a build (:meth:`reason`)."""
        blocks = list(blocks)
        cache = self._cache
        if cache is not None and len(cache.blocks) != len(blocks):
            cache = None  # the parameter blocks changed (a new param group): build
            self.forget()
        self.last_reason = self.reason(step, fresh)
        if self.last_reason is not None:
            self._cache = None  # its memory is free before the new blocks take theirs
            subset = curvature_subset(losses.numel(), self.batch, self.seed, step)
            result = compute_curvature(losses, blocks, config, outputs=outputs,
                                       over_budget=over_budget, samples=subset)
            self.computed += 1
            if self.every > 1:
                self._cache, self.built_at = result, step
                for block in result.blocks:  # formed once, copied at each reusing step
                    if isinstance(block, FactorBlock):
                        block.keep_dense = True
            return result, False
        self.last_reason = "reused"
        release_recording()  # no rows are built at this step: the closure's records go
        grads = mean_loss_gradients(losses, blocks, config.dtype)
        curv = list(cache.blocks)
        # matrix-free blocks (kept as None in a checkpoint, listed by name) are rebuilt
        stale = [i for i, (b, cb) in enumerate(zip(blocks, curv, strict=True))
                 if (cb is not None and cb.matrix_free) or b.name in self.rebuilt
                 or (cb is None and b.name in cache.matrix_free)]
        if stale:
            fresh_blocks = compute_curvature(
                losses, [blocks[i] for i in stale], config, outputs=outputs,
                over_budget=over_budget,
                samples=curvature_subset(losses.numel(), self.batch, self.seed, step))
            for i, cb in zip(stale, fresh_blocks.blocks, strict=True):
                curv[i] = cb
        self.reused += 1
        return replace(cache, blocks=curv, grads=grads, loss=losses.detach().mean(),
                       num_samples=losses.numel()), True
