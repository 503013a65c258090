"""Per-sample gradient rows from one backward pass per seed (a performance path, same result).

The generic path (:func:`qnewton.curvature.autograd.seeded_rows`) finds the gradient of sample s
with a backward pass seeded by sample s's part of the seed only: S samples cost S backward passes
over the *whole* batch, O(S²) work. Here the root is differentiated ONCE per seed; for every
autograd node a registered handler understands (:mod:`~qnewton.curvature.per_sample.handlers`),
a pre-hook captures ``δ``, the gradient flowing into the node's output, and the handler forms
each sample's gradient from ``δ`` and the node's saved tensors (docs/method.md §4.7). A block
takes this path only if *every* use of each of its parameters is understood.

Correctness does not rest on the graph's structure alone: coupling across samples (BatchNorm in
training mode, a loss normalized over the batch) or a layout that is not sample-major cannot be
seen there, so the result is compared with the generic computation on two rows and on a random
combination of all rows (three backward passes), and a block that disagrees is left to the
generic path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from qnewton.curvature.autograd import BatchedVJP, flat_rows, sample_seeds, seeded_rows
from qnewton.curvature.memory import DEFAULT_CHUNK_BYTES, element_size
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample.causes import generic_path_causes
from qnewton.curvature.per_sample.graph import Use, parameter_uses
from qnewton.curvature.per_sample.handler import Unsupported
from qnewton.curvature.per_sample.handlers import handlers_by_node_type

if TYPE_CHECKING:
    from qnewton.curvature.config import CurvatureConfig

#: Seed of the random combination of all rows that the check compares (a fixed seed: the check
#: is a deterministic function of its inputs).
CHECK_SEED = 0

#: Errors a handler may raise on a graph it does not expect; they refuse the fast path.
_REFUSALS = (Unsupported, ValueError, TypeError, AttributeError, RuntimeError, IndexError)


def _resolved(config: CurvatureConfig, root: torch.Tensor) -> CurvatureConfig:
    """``config`` with ``dtype=None`` (the model's) made concrete: the root's dtype."""
    return config if config.dtype is not None else replace(config, dtype=root.dtype)


def check_rows(num_samples: int, passes: int) -> list[tuple[int, int]]:
    """The ``(sample, pass)`` pairs checked one by one: the first and the last sample (first and
    last pass); a random combination of all rows is checked besides (:func:`_checked`)."""
    return sorted({(0, 0), (num_samples - 1, passes - 1)})


def _capture(root: torch.Tensor, seed: torch.Tensor, nodes: dict[int, object],
             params: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """One backward pass of ``root`` seeded with ``seed``; δ (first output gradient) per node."""
    deltas: dict[int, torch.Tensor] = {}

    def make_hook(key: int) -> Callable[[tuple[torch.Tensor | None, ...]], None]:
        def hook(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
            if grad_outputs and grad_outputs[0] is not None:
                deltas[key] = grad_outputs[0].detach()

        return hook

    handles = []
    try:
        for key, node in nodes.items():
            handles.append(node.register_prehook(make_hook(key)))
        torch.autograd.grad(root, params, grad_outputs=seed, retain_graph=True,
                            allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return deltas


def per_sample_rows(
    root: torch.Tensor,
    seeds: Sequence[torch.Tensor],
    num_samples: int,
    todo: Sequence[ParamBlock],
    factors: dict[int, torch.Tensor],
    config: CurvatureConfig,
    samples: torch.Tensor | None = None,
) -> set[int]:
    """Fill factor rows of the blocks whose parameters the handlers understand; return the ids
    of the blocks filled (and checked).

    ``root`` reshapes to ``(S, W)`` with row s belonging to sample s; ``seeds`` are P tensors
    shaped like ``root``. Row ``s·P + j`` of a block's factor (``(S·P, N)``) becomes the
    gradient of ``⟨seeds[j], root⟩`` restricted to sample s, i.e. of ``Σ_w seeds[j][s, w]·
    root[s, w]``: for the empirical Fisher ``root`` = losses and one seed of ones, for the GGN
    ``root`` = outputs and seed j = ``R[:, :, j]``. With ``samples`` (sorted sample indices, a
    curvature subset) the factors have ``len(samples)·P`` rows, row ``i·P + j`` for sample
    ``samples[i]``; the handlers still form rows chunk by chunk over all S samples (their work
    stays O(S), like the backward pass), only the selected rows are kept.
    """
    s, npass = num_samples, len(seeds)
    config = _resolved(config, root)
    if root.grad_fn is None or s < 2 or npass < 1 or root.numel() % s:
        return set()
    params = {id(p): p for b in todo for p in b.params}
    try:
        uses, other = parameter_uses(root.grad_fn, params, handlers_by_node_type())
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return set()
    ctxs: dict[int, object] = {}
    nodes: dict[int, object] = {}
    for pid, plist in uses.items():
        for use in plist:
            key = id(use.node)
            if key in ctxs:
                continue
            try:
                ctxs[key] = use.handler.prepare(use.node, s)
                nodes[key] = use.node
            except _REFUSALS:
                ctxs[key] = None
        if any(ctxs[id(use.node)] is None for use in plist):
            other.add(pid)
    eligible = [b for b in todo if all(id(p) in uses and id(p) not in other for p in b.params)]
    if not eligible:
        return set()
    wanted = {id(use.node): use.node for b in eligible for p in b.params for use in uses[id(p)]}
    eligible_params = [p for b in eligible for p in b.params]
    alive = {id(b) for b in eligible}
    elsize = element_size(config.dtype)
    row_bytes = max(b.numel for b in eligible) * elsize

    def chunk(b: ParamBlock) -> int:
        extra = max(use.handler.workspace(ctxs[id(use.node)], use.role, s)
                    for p in b.params for use in uses[id(p)])
        return max(1, min(s, DEFAULT_CHUNK_BYTES // max(1, row_bytes + extra * elsize)))

    def fill(p: torch.Tensor, plist: list[Use], deltas: dict[int, torch.Tensor],
             dest: torch.Tensor, r0: int, r1: int) -> None:
        """Per-sample gradients of ``p`` for samples r0..r1 (summed over its uses) → ``dest``."""
        for i, use in enumerate(plist):
            delta = deltas.get(id(use.node))
            if delta is None:
                raise Unsupported("no gradient reached the node")
            piece = use.handler.per_sample(ctxs[id(use.node)], use.role, delta, r0, r1, s,
                                           config.dtype)
            if piece.shape != dest.shape:
                raise Unsupported("per-sample gradient of the wrong size")
            if i == 0:
                dest.copy_(piece)
            else:
                dest.add_(piece)

    kept = s if samples is None else samples.numel()
    for j, seed in enumerate(seeds):
        deltas = _capture(root, seed, wanted, eligible_params)
        for b in eligible:
            if id(b) not in alive:
                continue
            rows = factors[id(b)].view(kept, npass, b.numel)[:, j]
            k = chunk(b)
            try:
                for r0 in range(0, s, k):
                    r1 = min(s, r0 + k)
                    if samples is None:
                        lo, hi, dest = r0, r1, rows[r0:r1]
                    else:  # the chunk's selected samples: samples[lo:hi]
                        lo, hi = (int(v) for v in torch.searchsorted(samples, torch.tensor(
                            [r0, r1], dtype=samples.dtype)))
                        if lo == hi:
                            continue
                        dest = rows.new_empty((r1 - r0, b.numel))
                    col = 0
                    for p in b.params:
                        fill(p, uses[id(p)], deltas, dest[:, col : col + p.numel()], r0, r1)
                        col += p.numel()
                    if samples is not None:
                        rows[lo:hi] = dest[(samples[lo:hi] - r0).to(dest.device)]
            except _REFUSALS:
                alive.discard(id(b))
        del deltas
    done = [b for b in eligible if id(b) in alive]
    if not done:
        return set()
    return _checked(root, seeds, s, done, factors, config, samples)


def _checked(root: torch.Tensor, seeds: Sequence[torch.Tensor], s: int,
             done: Sequence[ParamBlock], factors: dict[int, torch.Tensor],
             config: CurvatureConfig, samples: torch.Tensor | None = None) -> set[int]:
    """The blocks whose fast rows agree with the generic computation on the rows of
    :func:`check_rows` and on ``wᵀF`` for random unit weights ``w`` over all S·P rows.

    A VJP seeded with ``Σ_{s,j} w_{s,j}·seeds[j]|_s`` (one backward pass) equals ``wᵀF`` when every
    row is right, and differs (almost surely) when any row is wrong — a handler's mistake on
    some rows, or coupling across samples, under which the VJP of the combination is not the
    combination of the one-pass rows. Three backward passes in all, like three checked rows.
    """
    npass = len(seeds)
    kept = s if samples is None else samples.numel()
    pairs = check_rows(kept, npass)
    rows = [i * npass + j for i, j in pairs]  # factor rows
    sample_of = (lambda i: i) if samples is None else (lambda i: int(samples[i]))
    root_rows = [sample_of(i) * npass + j for i, j in pairs]  # the same rows, by sample index
    gen = torch.Generator().manual_seed(CHECK_SEED)
    w = torch.randn((kept, npass), generator=gen, dtype=torch.float64)
    w /= torch.linalg.vector_norm(w)
    w_all = w if samples is None else w.new_zeros((s, npass)).index_copy_(0, samples, w)
    combined = sum(w_all[:, j].to(root.device, root.dtype).unsqueeze(1) * seed.reshape(s, -1)
                   for j, seed in enumerate(seeds))
    check_seeds = torch.cat([sample_seeds(root, seeds, s, root_rows),
                             combined.reshape(1, *root.shape).to(root.dtype)])
    params = [p for b in done for p in b.params]
    exact = BatchedVJP()(root, params, check_seeds)
    tol = max(1e-8, 1e3 * torch.finfo(root.dtype).eps)
    refs, fast, pos = {}, {}, 0
    w_rows = w.reshape(1, -1).to(config.dtype)
    for b in done:
        piece = exact[pos : pos + len(b.params)]
        pos += len(b.params)
        refs[id(b)] = flat_rows(piece, len(rows) + 1).detach().to(config.dtype)
        factor = factors[id(b)]
        fast[id(b)] = torch.cat([factor[rows], w_rows.to(factor.device) @ factor])
    # Errors are judged against the largest per-sample gradient of all checked blocks, so that a
    # block whose gradient is pure round-off (e.g. an attention key bias, to which softmax is
    # invariant) is not rejected for disagreeing in its noise.
    scale = max(float(torch.linalg.vector_norm(r, dim=1).max()) for r in refs.values())
    passed = set()
    for b in done:
        err = torch.linalg.vector_norm(fast[id(b)] - refs[id(b)], dim=1)
        if not bool((err > tol * scale + torch.finfo(config.dtype).tiny).any()):
            passed.add(id(b))
    return passed


def _warn_generic(blocks: Sequence[ParamBlock], root: torch.Tensor) -> None:
    """Say (once per block, Python's warning filter) when a block's rows take the generic path:
    it costs one backward pass per sample; the warning names the cause found in the graph."""
    for b in blocks:
        warnings.warn(
            f"per-sample rows of block {b.name!r} take the generic path (one backward pass per "
            "sample): " + "; ".join(generic_path_causes(root, b.params))
            + " (docs/method.md §4.7)", RuntimeWarning, stacklevel=3)


def factor_rows(root: torch.Tensor, seeds: Sequence[torch.Tensor], num_samples: int,
                todo: Sequence[ParamBlock], config: CurvatureConfig,
                min_row_elements: int = 0,
                samples: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
    """The ``(S·P, N)`` factor of every block in ``todo`` (P = ``len(seeds)``; row ``s·P + j``
    is sample s's gradient of ``⟨seeds[j], root⟩``): the one-pass fast path where handlers
    understand the block, the generic path for the rest. ``min_row_elements`` sizes the generic
    path's chunks (its seeds are ``root``-shaped rows, which can be wider than the block).
    ``samples`` (sorted indices, a curvature subset of k samples): ``(k·P, N)`` factors, row
    ``i·P + j`` for sample ``samples[i]``."""
    config = _resolved(config, root)
    kept = num_samples if samples is None else samples.numel()
    rows = kept * len(seeds)
    factors = {
        id(b): torch.empty((rows, b.numel), dtype=config.dtype, device=b.params[0].device)
        for b in todo
    }
    if not todo:
        return factors
    fast = per_sample_rows(root, seeds, num_samples, todo, factors, config, samples)
    rest = [b for b in todo if id(b) not in fast]
    _warn_generic(rest, root)
    if rest:
        width = max(sum(b.numel for b in rest), min_row_elements)
        npass = len(seeds)
        wanted = None if samples is None else (
            samples.unsqueeze(1) * npass + torch.arange(npass)).reshape(-1)
        seeded_rows(root, seeds, num_samples, rest, factors, config.dtype, config.chunk_size,
                    width * root.element_size(), wanted)
    return factors
