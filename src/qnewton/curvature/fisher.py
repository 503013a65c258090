"""Empirical Fisher blocks ``(1/S)·Σ_s g_s g_sᵀ`` in factor form (``F`` = per-sample gradients)."""

from __future__ import annotations

import torch

from qnewton.curvature.autograd import BatchedVJP, store_rows
from qnewton.curvature.kind import BuildInputs, CurvatureKind
from qnewton.curvature.linear_rows import linear_per_sample_rows
from qnewton.curvature.memory import chunk_rows
from qnewton.curvature.representation import CurvatureBlock, FactorBlock


class FisherCurvature(CurvatureKind):
    """The ``S×N`` per-sample gradients ``g_s = ∇ losses[s]`` with ``scale = 1/S``.

    The ``g_s`` are per-sample gradients only if the model has no batch-coupling layers (e.g.
    BatchNorm in training mode); otherwise they are the gradients of each loss term. Linear layers
    take a one-backward-pass fast path (:mod:`qnewton.curvature.linear_rows`); other parameters
    use batched backward passes seeded by one-hot vectors (docs/method.md §4.7).
    """

    name = "fisher"
    psd = True

    def stored_elements(self, n: int, num_samples: int, num_outputs: int) -> int:
        return num_samples * n

    def storage(self, n: int, num_samples: int, num_outputs: int, dtype_name: str) -> str:
        return f"as a {num_samples}×{n} {dtype_name} factor (empirical Fisher, one row per sample)"

    def budget_advice(self, num_samples: int, num_outputs: int) -> str:
        return "use fewer samples per step or a larger budget"

    def build(self, inputs: BuildInputs) -> list[CurvatureBlock | None]:
        losses, config = inputs.losses, inputs.config
        s = losses.numel()
        todo = [b for b, ok in zip(inputs.blocks, inputs.built, strict=True) if ok]
        factors = {
            id(b): torch.empty((s, b.numel), dtype=config.dtype, device=b.params[0].device)
            for b in todo
        }
        if todo:
            fast = linear_per_sample_rows(losses, todo, factors, config)
            rest = [b for b in todo if id(b) not in fast]
            if rest:
                params = [p for b in rest for p in b.params]
                n_total = sum(b.numel for b in rest)
                vjp = BatchedVJP()
                k = chunk_rows(config.chunk_size, s, n_total * losses.element_size())
                for s0 in range(0, s, k):
                    s1 = min(s, s0 + k)
                    seeds = torch.zeros((s1 - s0, s), dtype=losses.dtype, device=losses.device)
                    idx = torch.arange(s0, s1, device=seeds.device)
                    seeds[idx - s0, idx] = 1
                    store_rows(vjp(losses, params, seeds), rest, factors, s0, s1, config.dtype)
        return [
            FactorBlock(b.name, "fisher", factors[id(b)], scale=1.0 / s) if ok else None
            for b, ok in zip(inputs.blocks, inputs.built, strict=True)
        ]
