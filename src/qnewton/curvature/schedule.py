"""When to build curvature, and from how many samples: subsampling and reuse across steps.

* **Curvature mini-batch** (Martens 2010, "Deep learning via Hessian-free optimization", §4.2;
  Byrd, Chin, Neveitt, Nocedal 2011): the curvature is built from a seeded random subset of
  ``batch`` of the S samples, the gradient always from all S. The subset of a step is a function
  of ``(seed, step, S, batch)`` only (:func:`curvature_subset`), so a run is reproducible and a
  resumed run draws the same subsets.
* **Reuse** (K-FAC, Martens & Grosse 2015, §8, recomputes its inverses every T₃ steps): with
  ``every = k`` the curvature blocks built at a step t that is a multiple of k serve steps
  t … t + k − 1, each with its own fresh full-batch gradient (a run resumed from a checkpoint,
  which does not hold the blocks, builds at its first step too). Matrix-free blocks hold
  nothing but the graph of the step that built them, which the parameter update invalidates, so
  they are rebuilt every step (they cost nothing until a product is taken).

See docs/method.md §4.7, "Curvature subsampling and reuse".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from qnewton.curvature.compute import CurvatureResult, compute_curvature, mean_loss_gradients
from qnewton.curvature.config import CurvatureConfig
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample.recording import release_recording
from qnewton.validation import check_int

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
        every: build curvature every this many steps (1: every step).
        seed: seed of the subset draws.
        computed, reused: how many steps built curvature and how many reused it.
    """

    def __init__(self, batch: int | None = None, every: int = 1, seed: int = 0) -> None:
        if batch is not None:
            check_int("curvature_batch", batch, 1)
        self.batch = batch
        self.every = check_int("curvature_every", every, 1)
        self.seed = check_int("seed", seed)  # any integer, as QNewton's seed
        self.computed = 0
        self.reused = 0
        self._cache: CurvatureResult | None = None

    def due(self, step: int) -> bool:
        """Whether step ``step`` builds curvature (else it reuses the cached blocks)."""
        # steps that are multiples of ``every`` build, so a run resumed without its cache builds
        # at its first step and is back in phase with an uninterrupted run from the next multiple
        return self._cache is None or step % self.every == 0

    def __call__(self, losses: torch.Tensor, blocks: Sequence[ParamBlock],
                 config: CurvatureConfig, outputs: torch.Tensor | None, step: int,
                 over_budget: str) -> tuple[CurvatureResult, bool]:
        """``(result, reused)`` for step ``step``: fresh curvature, or the cached blocks with
        this step's full-batch gradients (and fresh matrix-free blocks)."""
        blocks = list(blocks)
        if self.due(step):
            subset = curvature_subset(losses.numel(), self.batch, self.seed, step)
            result = compute_curvature(losses, blocks, config, outputs=outputs,
                                       over_budget=over_budget, samples=subset)
            self.computed += 1
            if self.every > 1:
                self._cache = result
            return result, False
        cache = self._cache
        release_recording()  # no rows are built at this step: the closure's records go
        grads = mean_loss_gradients(losses, blocks, config.dtype)
        curv = list(cache.blocks)
        stale = [i for i, cb in enumerate(curv) if cb is not None and cb.matrix_free]
        if stale:
            fresh = compute_curvature(losses, [blocks[i] for i in stale], config,
                                      outputs=outputs, over_budget=over_budget,
                                      samples=curvature_subset(losses.numel(), self.batch,
                                                               self.seed, step))
            for i, cb in zip(stale, fresh.blocks, strict=True):
                curv[i] = cb
        self.reused += 1
        return replace(cache, blocks=curv, grads=grads, loss=losses.detach().mean(),
                       num_samples=losses.numel()), True
