"""Batched backward passes shared by the curvature kinds.

``torch.autograd.grad(..., is_grads_batched=True)`` vmaps one backward pass over many seed
vectors; the helpers here chunk those seeds to a memory budget and write the resulting rows
into factor matrices in the block flattening order (:mod:`qnewton.curvature.params`).
:func:`seeded_rows` is the generic per-sample path: one backward pass (one vmapped seed) per
factor row, which every parameter can take (docs/method.md §4.7).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from qnewton.curvature.memory import chunk_rows
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




def sample_seeds(root: torch.Tensor, seeds: Sequence[torch.Tensor], num_samples: int,
                 rows: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Seeds ``(len(rows), *root.shape)`` for factor rows ``r = s·P + j``: ``seeds[j]`` (shaped
    like ``root``, which reshapes to ``(S, W)``) kept on sample s's row only, zero elsewhere."""
    s, p = num_samples, len(seeds)
    stacked = torch.stack([sd.reshape(s, -1) for sd in seeds])  # (P, S, W)
    r = torch.as_tensor(rows, dtype=torch.long, device=root.device)
    out = torch.zeros((r.numel(), s, stacked.shape[-1]), dtype=root.dtype, device=root.device)
    idx = torch.arange(r.numel(), device=root.device)
    out[idx, r // p, :] = stacked[r % p, r // p, :].to(root.dtype)
    return out.reshape(r.numel(), *root.shape)


def seeded_rows(
    root: torch.Tensor,
    seeds: Sequence[torch.Tensor],
    num_samples: int,
    todo: Sequence[ParamBlock],
    factors: dict[int, torch.Tensor],
    dtype: torch.dtype,
    chunk_size: int | None,
    row_bytes: int,
    rows: torch.Tensor | None = None,
) -> None:
    """The generic path: row ``s·P + j`` of each block's factor is the gradient of
    ``⟨seeds[j], root⟩`` restricted to sample s (see :func:`sample_seeds`), from one vmapped
    backward pass per row, ``chunk_rows(chunk_size, S·P, row_bytes)`` rows at a time. With
    ``rows`` (indices ``s·P + j``, a curvature subset) factor row i is ``rows[i]`` instead."""
    wanted = torch.arange(num_samples * len(seeds)) if rows is None else rows
    m = wanted.numel()
    params = [p for b in todo for p in b.params]
    vjp = BatchedVJP()
    k = chunk_rows(chunk_size, m, row_bytes)
    for r0 in range(0, m, k):
        r1 = min(m, r0 + k)
        batch = sample_seeds(root, seeds, num_samples, wanted[r0:r1])
        store_rows(vjp(root, params, batch), todo, factors, r0, r1, dtype)


#: The forward-mode path is taken when the rows outnumber the parameters by this factor: one
#: of its products (a backward pass through the backward graph) costs about as much as two or
#: three plain backward passes (measured: a 2-D Poisson PINN, 1,020 rows of 129 parameters,
#: 0.17 s by forward mode vs 1.6 s by one backward pass per row).
FORWARD_MODE_RATIO = 3


def forward_mode_rows(
    root: torch.Tensor,
    seeds: Sequence[torch.Tensor],
    num_samples: int,
    todo: Sequence[ParamBlock],
    factors: dict[int, torch.Tensor],
    dtype: torch.dtype,
    chunk_size: int | None,
    rows: torch.Tensor | None = None,
) -> None:
    """The rows of :func:`seeded_rows` from the Jacobian ``J = ∂root/∂θ`` built column by
    column: ``J v = ∂/∂u ⟨Jᵀu, v⟩`` (the double-backward trick, Pearlmutter 1994), one vmapped
    product per parameter, then row ``s·P + j = Σ_w seeds[j][s, w]·J[(s, w), :]``. N products
    instead of S·P backward passes: the cheaper path when the parameters are few and the rows
    many (a physics-informed network's residuals). Raises ``RuntimeError`` when the graph has
    no double backward (the caller then takes :func:`seeded_rows`)."""
    params = [p for b in todo for p in b.params]
    n = sum(p.numel() for p in params)
    u = torch.zeros_like(root, requires_grad=True)
    back = torch.autograd.grad(root, params, grad_outputs=u, create_graph=True,
                               allow_unused=True)
    flat = torch.cat([torch.zeros(p.numel(), dtype=root.dtype, device=root.device)
                      if g is None else g.reshape(-1) for g, p in zip(back, params, strict=True)])
    if not flat.requires_grad:  # the root does not depend on these parameters at all
        jac = torch.zeros((n, root.numel()), dtype=root.dtype, device=root.device)
    else:
        vjp = BatchedVJP()
        k = chunk_rows(chunk_size, n, root.numel() * root.element_size())
        eye = torch.eye(n, dtype=root.dtype, device=root.device)
        jac = torch.cat([vjp(flat, [u], eye[c0:c0 + k])[0].reshape(min(k, n - c0), -1)
                         for c0 in range(0, n, k)])
    s, p = num_samples, len(seeds)
    jac = jac.reshape(n, s, -1)  # (N, S, W)
    stacked = torch.stack([sd.detach().reshape(s, -1).to(jac.dtype) for sd in seeds])  # P, S, W
    all_rows = torch.einsum("psw,nsw->spn", stacked, jac).reshape(s * p, n)
    if rows is not None:
        all_rows = all_rows[rows.to(all_rows.device)]
    col = 0
    for b in todo:
        factors[id(b)][:] = all_rows[:, col:col + b.numel].detach().to(dtype)
        col += b.numel

