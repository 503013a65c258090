"""Batched backward passes shared by the curvature kinds.

``torch.autograd.grad(..., is_grads_batched=True)`` vmaps one backward pass over many seed
vectors; the helpers here chunk those seeds to a memory budget and write the resulting rows
into factor matrices in the block flattening order (:mod:`qnewton.curvature.params`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from qnewton.curvature.params import ParamBlock


class BatchedVJP:
    """``autograd.grad`` with ``is_grads_batched=True`` (vmap over the backward pass), falling
    back to one backward pass per row (with a warning) if the graph has an op vmap can't batch.
    The graph is always retained."""

    def __init__(self) -> None:
        self.batched = True

    def __call__(
        self,
        outputs: torch.Tensor,
        inputs: Sequence[torch.Tensor],
        grad_outputs: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Return, for each input, a tensor ``(k, *input.shape)`` whose row ``i`` is the VJP
        ``(∂outputs/∂input)ᵀ grad_outputs[i]``; zeros where ``outputs`` doesn't depend on it."""
        k = grad_outputs.shape[0]
        if self.batched:
            try:
                res = torch.autograd.grad(
                    outputs,
                    inputs,
                    grad_outputs=grad_outputs,
                    retain_graph=True,
                    allow_unused=True,
                    is_grads_batched=True,
                )
            except RuntimeError as exc:
                warnings.warn(
                    "batched backward (is_grads_batched) failed, falling back to one backward "
                    f"pass per row (slower): {str(exc).splitlines()[0] if str(exc) else exc!r}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.batched = False
        if not self.batched:
            rows = [
                torch.autograd.grad(
                    outputs,
                    inputs,
                    grad_outputs=grad_outputs[i],
                    retain_graph=True,
                    allow_unused=True,
                )
                for i in range(k)
            ]
            res = []
            for j, inp in enumerate(inputs):
                if all(r[j] is None for r in rows):
                    res.append(None)
                else:
                    res.append(
                        torch.stack([torch.zeros_like(inp) if r[j] is None else r[j] for r in rows])
                    )
        return [
            inp.new_zeros((k, *inp.shape)) if r is None else r
            for r, inp in zip(res, inputs, strict=True)
        ]


def store_rows(
    rows: Sequence[torch.Tensor],
    todo: Sequence[ParamBlock],
    factors: dict[int, torch.Tensor],
    r0: int,
    r1: int,
    dtype: torch.dtype,
) -> None:
    """Write batched gradients (one tensor per parameter, in block order) into factor rows."""
    pos = 0
    for b in todo:
        piece = rows[pos : pos + len(b.params)]
        pos += len(b.params)
        factors[id(b)][r0:r1] = flat_rows(piece, r1 - r0).detach().to(dtype)


def flat_rows(pieces: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Concatenate ``(k, *shape)`` tensors into ``(k, N)`` rows (block flattening order)."""
    return torch.cat([t.reshape(k, -1) for t in pieces], dim=1)


