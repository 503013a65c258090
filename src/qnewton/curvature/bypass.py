"""The curvature of loss terms that bypass the outputs, for the GGN (an L2 penalty, an auxiliary
loss on the parameters).

The GGN models each loss as a function of the outputs, ``ℓ_s(z_s(θ))``; a term that reaches θ
another way — ``ℓ_s = f(z_s) + P(θ)`` — is missing from ``(1/S)Σ J_sᵀH_sJ_s``. Its own curvature
is the Hessian of the mean loss *with the outputs held fixed*,

    H_P = ∂²L/∂θ² |_{z fixed}   (= ∇²P for a penalty P(θ); 2λI for λ‖θ‖²),

obtained exactly and cheaply: the gradient with the outputs held fixed is one backward pass with
the gradient at the outputs replaced by zero (a tensor hook), kept with its graph; its N rows are
N batched double-backward passes through that gradient's graph only (the penalty's few nodes,
not the model). The block's curvature becomes ``GGN + H_P⁺`` — H_P symmetrized and its negative
eigenvalues clamped (as the GGN clamps each H_s), so the block stays PSD — stored as N more
factor rows ``√(S·μ_i)·u_iᵀ`` (eigenpairs (μ_i, u_i) of H_P⁺, scale 1/S), so every solver of
factor blocks applies unchanged (docs/method.md §4.7, "Any model").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from qnewton.curvature.autograd import BatchedVJP, flat_rows
from qnewton.curvature.memory import DEFAULT_CHUNK_BYTES
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample.graph import graph_nodes

#: Largest block (parameters) whose bypass Hessian is formed (N² entries, an N³ eigensolve):
#: 4096 → 128 MiB in float64 and about a second of ``eigh`` on one CPU thread. A larger block
#: with a bypass term keeps its GGN without it, and the result says so.
MAX_BYPASS_N = 4096


def fixed_output_gradients(losses: torch.Tensor, outputs: torch.Tensor,
                           params: Sequence[torch.Tensor],
                           create_graph: bool) -> list[torch.Tensor | None]:
    """``∂L/∂θ`` with the outputs held fixed (L = mean loss), with its graph if
    ``create_graph``; ``None`` where it is zero by structure."""
    handle = outputs.register_hook(torch.zeros_like)
    try:
        return list(torch.autograd.grad(losses.mean(), list(params), retain_graph=True,
                                        create_graph=create_graph, allow_unused=True))
    finally:
        handle.remove()


def reaches_parameters_around(losses: torch.Tensor, outputs: torch.Tensor,
                              params: Sequence[torch.Tensor]) -> bool:
    """Whether the losses' graph reaches any of ``params`` other than through ``outputs``'s node:
    a walk of the loss's own nodes (a few for ``f(z)``), stopping at that node. ``False`` means
    the gradient with the outputs held fixed is zero by structure — no backward pass needed."""
    wanted = {id(p) for p in params}
    return any(id(getattr(node, "variable", None)) in wanted
               for node in graph_nodes(losses.grad_fn, stop=outputs.grad_fn))


def bypass_rows(losses: torch.Tensor, outputs: torch.Tensor, blocks: Sequence[ParamBlock],
                num_samples: int, dtype: torch.dtype
                ) -> tuple[dict[int, torch.Tensor], dict[str, str], set[str]]:
    """Per block with a bypass term, the extra factor rows ``√(S·μ_i)·u_iᵀ`` (scale 1/S) of
    ``H_P⁺``; ``{block name: what happened}`` for every block with such a term; and the names
    of the blocks whose term's curvature is fully accounted for (added, or zero)."""
    params = [p for b in blocks for p in b.params]
    out: dict[int, torch.Tensor] = {}
    notes: dict[str, str] = {}
    covered: set[str] = set()
    # None where the loss reaches the parameters through the outputs only (the common case).
    # Else first without a graph (any model's backward supports it): which blocks have a term
    # at all. A term whose gradient is exactly zero here (an L2 penalty at θ = 0) is not seen
    # this step.
    if not reaches_parameters_around(losses, outputs, params):
        return out, notes, covered
    plain = fixed_output_gradients(losses, outputs, params, create_graph=False)
    if all(g is None or not bool(g.any()) for g in plain):
        return out, notes, covered
    try:
        grads = fixed_output_gradients(losses, outputs, params, create_graph=True)
    except (RuntimeError, NotImplementedError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        pos = 0
        for b in blocks:
            if any(g is not None and bool(g.any()) for g in plain[pos : pos + len(b.params)]):
                notes[b.name] = f"bypass term's curvature left out: {first[:120]}"
            pos += len(b.params)
        return out, notes, covered
    pos = 0
    for b in blocks:
        pieces = grads[pos : pos + len(b.params)]
        seen = plain[pos : pos + len(b.params)]
        pos += len(b.params)
        live = [i for i, g in enumerate(pieces) if g is not None]
        if not any(g is not None and bool(g.any()) for g in seen):
            continue
        curved = [i for i in live if pieces[i].requires_grad]
        if not curved:  # a term linear in θ: gradient only, no curvature
            notes[b.name] = "bypass term linear in the parameters (no curvature)"
            covered.add(b.name)
            continue
        if b.numel > MAX_BYPASS_N:
            notes[b.name] = (f"bypass term's curvature left out: block of {b.numel} parameters, "
                             f"over {MAX_BYPASS_N}")
            continue
        h = _hessian(pieces, curved, b, dtype)
        rows = psd_rows((h + h.T) / 2, num_samples)
        if rows.shape[0] == 0:
            notes[b.name] = "bypass term with no positive curvature"
            covered.add(b.name)
            continue
        out[id(b)] = rows
        notes[b.name] = f"bypass term's curvature added ({rows.shape[0]} rows)"
        covered.add(b.name)
    return out, notes, covered


def psd_rows(h: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Rows ``R`` (K, N) with ``RᵀR / S = H⁺`` for a symmetric (N, N) ``h``: ``√(S·μ_i)·u_iᵀ``
    for its eigenpairs with μ_i above round-off (``max|μ|·N·eps``). The eigendecomposition runs
    per connected component of h's nonzero pattern — an L2 penalty's Hessian is diagonal, and
    one ``eigh`` of the whole N×N matrix (N³) took 3 s of a 1.4 s step at N = 3,466 (one CPU
    thread) where its diagonal gives the same rows (scaled unit vectors) at once."""
    n, dtype = h.shape[0], h.dtype
    pattern = h != 0
    pattern.fill_diagonal_(False)
    if not bool(pattern.any()):  # diagonal: its entries are the eigenvalues, e_i the vectors
        evals = h.diagonal()
        keep = (evals > evals.abs().max() * n * torch.finfo(dtype).eps).nonzero().flatten()
        rows = torch.zeros((keep.numel(), n), dtype=dtype)
        rows[torch.arange(keep.numel()), keep] = (num_samples * evals[keep]).sqrt()
        return rows
    count, labels = connected_components(coo_matrix(pattern.numpy()), directed=False)
    parts = []
    for c in range(count):
        idx = torch.from_numpy((labels == c).nonzero()[0])
        evals, evecs = torch.linalg.eigh(h[idx][:, idx])
        parts.append((idx, evals, evecs))
    top = max(float(e.abs().max()) for _, e, _ in parts)
    cut = top * n * torch.finfo(dtype).eps
    rows = []
    for idx, evals, evecs in parts:
        keep = evals > cut
        piece = torch.zeros((int(keep.sum()), n), dtype=dtype)
        piece[:, idx] = (evecs[:, keep] * (num_samples * evals[keep]).sqrt()).T
        rows.append(piece)
    return torch.cat(rows)


def _hessian(pieces: Sequence[torch.Tensor | None], curved: Sequence[int], block: ParamBlock,
             dtype: torch.dtype) -> torch.Tensor:
    """The N×N Hessian of the fixed-output gradient, from batched double-backward passes seeded
    by rows of the identity, in chunks of at most 64 MiB."""
    n = block.numel
    sizes = [p.numel() for p in block.params]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    k = max(1, min(n, DEFAULT_CHUNK_BYTES // max(1, 8 * n)))
    rows = []
    vjp = BatchedVJP()
    for r0 in range(0, n, k):
        r1 = min(n, r0 + k)
        eye = torch.zeros((r1 - r0, n), dtype=dtype)
        eye[torch.arange(r1 - r0), torch.arange(r0, r1)] = 1
        total = None
        for i in curved:
            g = pieces[i]
            seed = eye[:, offsets[i] : offsets[i] + sizes[i]].reshape(r1 - r0, *g.shape)
            got = vjp(g, block.params, seed.to(g.dtype))
            part = flat_rows(got, r1 - r0).detach().to(dtype)
            total = part if total is None else total + part
        rows.append(total)
    return torch.cat(rows)
