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
generic path. A passed check is kept for later graphs of the same structure while a one-sample
leak probe finds the samples independent (:mod:`~qnewton.curvature.per_sample.check_memory`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from qnewton.curvature.autograd import (
    FORWARD_MODE_RATIO,
    BatchedVJP,
    flat_rows,
    forward_mode_rows,
    sample_seeds,
    seeded_rows,
)
from qnewton.curvature.memory import DEFAULT_CHUNK_BYTES, element_size
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample.batch_norm import statistics_held, training_nodes
from qnewton.curvature.per_sample.capture import capture
from qnewton.curvature.per_sample.causes import generic_path_causes
from qnewton.curvature.per_sample.check_memory import check_key, keep_check, kept_check, leaks
from qnewton.curvature.per_sample.functional import functional_rows, live_calls
from qnewton.curvature.per_sample.graph import Use, graph_nodes, parameter_uses
from qnewton.curvature.per_sample.handler import REFUSALS, SampleRows, Unsupported
from qnewton.curvature.per_sample.handlers import handlers_by_node_type
from qnewton.curvature.per_sample.layout import probe_layouts
from qnewton.curvature.per_sample.recording import latest_recording
from qnewton.curvature.per_sample.sample_map import forget, kept_map, map_sample_rows
from qnewton.curvature.structured import (
    KroneckerRows,
    StructuredFactor,
    explicit_rows,
    weighted_row_sum,
)

if TYPE_CHECKING:
    from qnewton.curvature.config import CurvatureConfig

#: The paths a block's rows can take, cheapest first (:func:`factor_rows`).
PATHS = ("one-pass", "one-pass+residual", "functional", "forward-mode", "loop")

#: Seed of the random combination of all rows that the check compares (a fixed seed: the check
#: is a deterministic function of its inputs).
CHECK_SEED = 0



def _resolved(config: CurvatureConfig, root: torch.Tensor) -> CurvatureConfig:
    """``config`` with ``dtype=None`` (the model's) made concrete: the root's dtype."""
    return config if config.dtype is not None else replace(config, dtype=root.dtype)


def check_rows(num_samples: int, passes: int) -> list[tuple[int, int]]:
    """The ``(sample, pass)`` pairs checked one by one: the first and the last sample (first and
    last pass); a random combination of all rows is checked besides (:func:`_checked`)."""
    return sorted({(0, 0), (num_samples - 1, passes - 1)})


def residual_weights(seed: torch.Tensor, s: int, dtype: torch.dtype) -> torch.Tensor | None:
    """``a_s / Σ a`` with ``a_s = Σ_w seed[s, w]``: how a sample-free term's gradient (a penalty
    added to every loss, say) is shared among the rows; ``None`` if the seeds sum to zero."""
    a = seed.detach().reshape(s, -1).sum(dim=1).to(dtype)
    total = a.sum()
    return None if float(total.abs()) <= torch.finfo(dtype).tiny else a / total


def add_residual(rows: torch.Tensor, total: torch.Tensor, grads: dict[int, torch.Tensor],
                 block: ParamBlock, seed: torch.Tensor, s: int,
                 samples: torch.Tensor | None) -> None:
    """Add to the rows of one seed the part of the block's gradient they do not explain.

    ``total`` is the sum of the rows over all S samples; the residual ``r = g − total`` is what
    the block's uses outside the understood layers contribute (an L2 penalty, an auxiliary loss
    on the parameters). A term that does not depend on the samples and is added to every loss
    contributes ``(a_s/Σa)·r`` to row s (:func:`residual_weights`), exactly; any other kind of
    term makes the rows wrong, which the engine's check then detects.
    """
    g = torch.cat([grads[id(p)].reshape(-1) for p in block.params]).to(rows.dtype)
    w = residual_weights(seed, s, rows.dtype)
    if w is None:
        return
    if samples is not None:
        w = w[samples.to(w.device)]
    rows.add_(torch.outer(w.to(rows.device), (g - total).to(rows.device)))


def per_sample_rows(
    root: torch.Tensor,
    seeds: Sequence[torch.Tensor],
    num_samples: int,
    todo: Sequence[ParamBlock],
    factors: dict[int, torch.Tensor],
    config: CurvatureConfig,
    samples: torch.Tensor | None = None,
    partial: bool = False,
    structured: bool = False,
) -> set[int]:
    """Fill factor rows of the blocks whose parameters the handlers understand; return the ids
    of the blocks filled (and checked).

    ``partial``: also take blocks whose parameters have uses no handler understands besides
    handled ones; their rows get the residual of :func:`add_residual` (exact for a sample-free
    term such as an L2 penalty; anything else fails the check).

    ``root`` reshapes to ``(S, W)`` with row s belonging to sample s; ``seeds`` are P tensors
    shaped like ``root``. Row ``s·P + j`` of a block's factor (``(S·P, N)``) becomes the
    gradient of ``⟨seeds[j], root⟩`` restricted to sample s, i.e. of ``Σ_w seeds[j][s, w]·
    root[s, w]``: for the empirical Fisher ``root`` = losses and one seed of ones, for the GGN
    ``root`` = outputs and seed j = ``R[:, :, j]``. With ``samples`` (sorted sample indices, a
    curvature subset) the factors have ``len(samples)·P`` rows, row ``i·P + j`` for sample
    ``samples[i]``; the handlers still form rows chunk by chunk over all S samples (their work
    stays O(S), like the backward pass), only the selected rows are kept.

    ``structured``: a block whose parameters' handlers all give Kronecker rows (linear layers,
    :mod:`qnewton.curvature.structured`) gets a :class:`~qnewton.curvature.structured.
    StructuredFactor` in ``factors`` instead of explicit rows (not with ``partial``: the
    residual is a dense update of every row).
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
    failed: set[int] = set()
    mapped_as = None  # the signature of the sample map the rows used (sample_map.py)
    for pid, plist in uses.items():
        for use in plist:
            key = id(use.node)
            if key in ctxs:
                continue
            try:
                ctxs[key] = use.handler.prepare(use.node, s)
                nodes[key] = use.node
            except REFUSALS:
                ctxs[key] = None
        if any(ctxs[id(use.node)] is None for use in plist):
            failed.add(pid)
    handler_of = {id(u.node): u.handler for plist in uses.values() for u in plist}
    if any(isinstance(c, SampleRows) for c in ctxs.values()):
        mapped = {id(u.node): u.node for pid, plist in uses.items() if pid not in failed
                  for u in plist}
        mapped_as = map_sample_rows(root, s, ctxs, mapped, handler_of,
                                    [params[pid] for pid in uses if pid not in failed])
        failed |= {pid for pid, plist in uses.items()
                   if any(ctxs[id(u.node)] is None for u in plist)}
    if partial:  # other uses allowed: the residual accounts for them (and the check judges)
        eligible = [b for b in todo if all(id(p) in uses and id(p) not in failed
                                           for p in b.params)
                    and any(id(p) in other for p in b.params)]
    else:
        eligible = [b for b in todo if all(id(p) in uses and id(p) not in other | failed
                                           for p in b.params)]
    if not eligible:
        return set()
    wanted = {id(use.node): use.node for b in eligible for p in b.params for use in uses[id(p)]}
    layouts = probe_layouts(root, s, {id(p): uses[id(p)] for b in eligible for p in b.params},
                            ctxs, wanted, params, handler_of)
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
    # blocks whose rows are Kronecker products (linear layers): (g, a) per parameter per seed
    kron: dict[int, list[list[tuple[torch.Tensor, torch.Tensor]]]] = {}
    for j, seed in enumerate(seeds):
        deltas, grads = capture(root, seed, wanted, eligible_params)
        for b in eligible:
            if id(b) not in alive:
                continue
            if structured and not partial and (j == 0 or id(b) in kron):
                try:
                    parts = _kronecker_parts(b, uses, ctxs, deltas, s, config.dtype)
                except REFUSALS:
                    alive.discard(id(b))
                    continue
                if parts is not None:  # the same for every seed: it depends on roles, ctxs
                    kron.setdefault(id(b), []).append(parts)
                    continue
            rows = factors[id(b)].view(kept, npass, b.numel)[:, j]
            k = chunk(b)
            total = torch.zeros(b.numel, dtype=config.dtype, device=rows.device)
            try:
                for r0 in range(0, s, k):
                    r1 = min(s, r0 + k)
                    if samples is None:
                        lo, hi, dest = r0, r1, rows[r0:r1]
                    else:  # the chunk's selected samples: samples[lo:hi]
                        lo, hi = (int(v) for v in torch.searchsorted(samples, torch.tensor(
                            [r0, r1], dtype=samples.dtype)))
                        if lo == hi and not partial:  # (the residual needs every row)
                            continue
                        dest = rows.new_empty((r1 - r0, b.numel))
                    col = 0
                    for p in b.params:
                        fill(p, uses[id(p)], deltas, dest[:, col : col + p.numel()], r0, r1)
                        col += p.numel()
                    if partial:
                        total += dest.sum(dim=0)
                    if samples is not None:
                        rows[lo:hi] = dest[(samples[lo:hi] - r0).to(dest.device)]
                if partial:
                    add_residual(rows, total, grads, b, seed, s, samples)
            except REFUSALS:
                alive.discard(id(b))
        del deltas
    explicit = {}
    for b in eligible:
        if id(b) in alive and id(b) in kron:
            explicit[id(b)] = factors[id(b)]
            factors[id(b)] = _structured(kron[id(b)], samples)
    done = [b for b in eligible if id(b) in alive]
    used = {id(u.node) for b in done for p in b.params for u in uses[id(p)]}
    probe = {k: n for k, n in wanted.items() if k in used}
    leaked = functools.partial(leaks, root, s, nodes=probe, ctxs=ctxs, handler_of=handler_of,
                               layouts=layouts, params=[p for b in done for p in b.params])
    passed = (_checked_or_kept(root, seeds, s, done, factors, config, samples, mapped_as,
                               (partial, structured, *layouts.values()), leaked)
              if done else set())
    if len(passed) < len(eligible):
        forget(mapped_as)  # rows from a kept map failed (or another reason): probe afresh
    for key, rows in explicit.items():  # a later stage fills the explicit rows of the rest
        if key not in passed:
            factors[key] = rows
    return passed


def _kronecker_parts(b: ParamBlock, uses: dict[int, list[Use]], ctxs: dict[int, object],
                     deltas: dict[int, torch.Tensor], s: int, dtype: torch.dtype
                     ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """``(g, a)`` of every parameter of ``b`` for one seed when each has one use whose handler
    gives its rows as Kronecker products (:meth:`~qnewton.curvature.per_sample.handler.
    NodeHandler.kronecker`), else ``None``."""
    parts = []
    for p in b.params:
        plist = uses[id(p)]
        if len(plist) != 1:
            return None
        use = plist[0]
        delta = deltas.get(id(use.node))
        if delta is None:
            raise Unsupported("no gradient reached the node")
        pair = use.handler.kronecker(ctxs[id(use.node)], use.role, delta, s, dtype)
        if pair is None:
            return None
        parts.append(pair)
    return parts


def _structured(per_seed: list[list[tuple[torch.Tensor, torch.Tensor]]],
                samples: torch.Tensor | None) -> StructuredFactor:
    """The :class:`~qnewton.curvature.structured.StructuredFactor` of one block from its
    parameters' ``(g, a)`` per seed (row ``s·P + j`` = sample s, seed j), restricted to
    ``samples`` when given."""
    pieces = []
    for i in range(len(per_seed[0])):
        a = per_seed[0][i][1]
        g = torch.stack([parts[i][0] for parts in per_seed], dim=1)
        if samples is not None:
            keep = samples.to(g.device)
            a, g = a[keep], g[keep]
        pieces.append(KroneckerRows(a, g))
    return StructuredFactor(pieces)


def _checked_or_kept(root: torch.Tensor, seeds: Sequence[torch.Tensor], s: int,
                     done: Sequence[ParamBlock], factors: dict[int, torch.Tensor],
                     config: CurvatureConfig, samples: torch.Tensor | None,
                     mapped_as: tuple | None, mode: tuple,
                     leaked: Callable[[int], bool]) -> set[int]:
    """:func:`_checked`, or the check kept from an earlier graph of the same structure, the same
    parameters and sample maps when ``leaked(sample)`` (one backward pass seeded on one sample)
    finds the samples still independent (:mod:`~qnewton.curvature.per_sample.check_memory`)."""
    params = [p for b in done for p in b.params]
    maps = kept_map(mapped_as)
    kept = s if samples is None else samples.numel()
    k = check_key(root, graph_nodes(root.grad_fn), s, kept, len(seeds), done,
                  (*mode, config.dtype, config.batch_norm))
    kept_as = kept_check(k, params, maps)
    if kept_as is not None and not leaked(kept_as[1] % s):
        return {id(b) for b in done if b.name in kept_as[0]}
    passed = _checked(root, seeds, s, done, factors, config, samples)
    keep_check(k, params, maps, frozenset(b.name for b in done if id(b) in passed),
               frozenset(b.name for b in done))
    return passed


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
    # The reference is itself computed in the model's precision: a bfloat16 MLP's autograd
    # rows are 3e-3 from float64 truth (the one-pass rows 2.5e-3), over the float32 losses'
    # 1e3·eps = 1.2e-4, so every bfloat16/float16 block went to the S-pass loop. 16 eps of the
    # lowest precision among the parameters still rejects coupling's O(1) errors.
    low = max((torch.finfo(p.dtype).eps for p in params if p.is_floating_point()), default=0.0)
    tol = max(1e-8, 1e3 * torch.finfo(root.dtype).eps, 16 * low)
    refs, fast, pos = {}, {}, 0
    w_rows = w.reshape(1, -1).to(config.dtype)
    for b in done:
        piece = exact[pos : pos + len(b.params)]
        pos += len(b.params)
        refs[id(b)] = flat_rows(piece, len(rows) + 1).detach().to(config.dtype)
        factor = factors[id(b)]
        fast[id(b)] = torch.cat([
            explicit_rows(factor, torch.tensor(rows), config.dtype),
            weighted_row_sum(factor, w_rows.reshape(-1)).reshape(1, -1).to(config.dtype)])
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


def _functional_stage(root: torch.Tensor, seeds: Sequence[torch.Tensor], s: int,
                      todo: Sequence[ParamBlock], factors: dict[int, torch.Tensor],
                      config: CurvatureConfig, samples: torch.Tensor | None,
                      reasons: dict[int, str]) -> set[int]:
    """The functional path (:mod:`~qnewton.curvature.per_sample.functional`) for ``todo``:
    rows from re-running each parameter's innermost recorded module per sample, plus the
    residual of :func:`add_residual`, checked like the handlers' rows. Fills ``reasons`` for the
    blocks it cannot take."""
    recording = latest_recording()
    graph = {id(n) for n in graph_nodes(root.grad_fn)}
    calls = live_calls(recording, graph)
    if not calls:
        for b in todo:
            reasons[id(b)] = ("no module calls were recorded for this graph (run the closure "
                              "inside qnewton.curvature.curvature_closure(); QNewton.step does)")
        return set()
    rows, refused, grads = functional_rows(root, seeds, s, todo, calls, config.dtype)
    reasons.update(refused)
    npass = len(seeds)
    kept = s if samples is None else samples.numel()
    filled = [b for b in todo if id(b) in rows]
    for b in filled:
        view = factors[id(b)].view(kept, npass, b.numel)
        for j, (seed, r) in enumerate(zip(seeds, rows[id(b)], strict=True)):
            total = r.sum(dim=0)
            if samples is not None:
                r = r[samples.to(r.device)]
            r = r.to(factors[id(b)].device)
            add_residual(r, total, grads[j], b, seed, s, samples)
            view[:, j] = r
    if not filled:
        return set()
    passed = _checked(root, seeds, s, filled, factors, config, samples)
    for b in filled:
        if id(b) not in passed:
            reasons[id(b)] = ("re-running its module per sample does not reproduce its "
                              "gradients: the module couples the samples (BatchNorm in training "
                              "mode, a loss normalized over the batch) or the parameter is used "
                              "outside it in a per-sample way")
    return passed


def _warn_generic(blocks: Sequence[ParamBlock], reasons: dict[int, str],
                  root: torch.Tensor) -> None:
    """Say (once per block and reason, Python's warning filter) when a block's rows take the
    S-pass loop, and why (the functional stage's reason, else the causes read off the graph,
    each with its fix): it costs one backward pass per sample."""
    for b in blocks:
        why = reasons.get(id(b)) or "; ".join(generic_path_causes(root, b.params))
        warnings.warn(
            f"per-sample rows of block {b.name!r} take the generic loop (one backward pass per "
            f"sample): {why} (docs/method.md §4.7)", RuntimeWarning, stacklevel=3)


def factor_rows(root: torch.Tensor, seeds: Sequence[torch.Tensor], num_samples: int,
                todo: Sequence[ParamBlock], config: CurvatureConfig,
                min_row_elements: int = 0,
                samples: torch.Tensor | None = None,
                paths: dict[str, str] | None = None, structured: bool = False
                ) -> dict[int, torch.Tensor | StructuredFactor]:
    """The ``(S·P, N)`` factor of every block in ``todo`` (P = ``len(seeds)``; row ``s·P + j``
    is sample s's gradient of ``⟨seeds[j], root⟩``), from the cheapest path that reproduces the
    generic computation on the engine's check, in order:

    1. the one-pass handlers, for blocks all of whose uses they understand;
    2. the handlers plus a residual, for blocks with other uses too (an L2 penalty);
    3. the functional path: each parameter's innermost recorded module re-run per sample under
       ``vmap`` (plus the residual);
    4. forward mode: the Jacobian column by column, one double-backward product per parameter
       (:func:`~qnewton.curvature.autograd.forward_mode_rows`), when the rows outnumber the
       block parameters by :data:`~qnewton.curvature.autograd.FORWARD_MODE_RATIO`;
    5. the generic loop (one backward pass per row), with a warning that says why.

    With ``config.batch_norm == "held"`` every backward pass here treats the batch statistics
    of training-mode BatchNorms as constants (:func:`~qnewton.curvature.per_sample.batch_norm.
    statistics_held`), so that all stages compute the same, per-sample rows.

    ``min_row_elements`` sizes the generic path's chunks (its seeds are ``root``-shaped rows,
    which can be wider than the block). ``samples`` (sorted indices, a curvature subset of k
    samples): ``(k·P, N)`` factors, row ``i·P + j`` for sample ``samples[i]``. ``paths``, if
    given, receives ``{block name: the path its rows took}`` (:data:`PATHS`, with the loop's
    reason). ``structured``: blocks of linear layers get a :class:`~qnewton.curvature.
    structured.StructuredFactor` (Kronecker rows) instead of an explicit factor
    (:func:`per_sample_rows`)."""
    config = _resolved(config, root)
    kept = num_samples if samples is None else samples.numel()
    rows = kept * len(seeds)
    factors = {
        id(b): torch.empty((rows, b.numel), dtype=config.dtype, device=b.params[0].device)
        for b in todo
    }
    if not todo:
        return factors
    held = []
    if config.batch_norm == "held" and root.grad_fn is not None:
        held = training_nodes(graph_nodes(root.grad_fn))
    taken: dict[str, str] = {}
    with statistics_held(held):
        _fill(root, seeds, num_samples, todo, factors, config, min_row_elements, samples, taken,
              structured)
    if held:
        taken = {k: f"{v} (batch-norm statistics held)" for k, v in taken.items()}
    if paths is not None:
        paths.update(taken)
    return factors


def _fill(root: torch.Tensor, seeds: Sequence[torch.Tensor], num_samples: int,
          todo: Sequence[ParamBlock], factors: dict[int, torch.Tensor], config: CurvatureConfig,
          min_row_elements: int, samples: torch.Tensor | None, taken: dict[str, str],
          structured: bool) -> None:
    """The stages of :func:`factor_rows`, in order; ``taken`` gets each block's path."""
    done = per_sample_rows(root, seeds, num_samples, todo, factors, config, samples,
                           structured=structured)
    taken.update({b.name: PATHS[0] for b in todo if id(b) in done})
    rest = [b for b in todo if id(b) not in done]
    if rest and root.grad_fn is not None and num_samples >= 2:
        new = per_sample_rows(root, seeds, num_samples, rest, factors, config, samples,
                              partial=True)
        taken.update({b.name: PATHS[1] for b in rest if id(b) in new})
        rest = [b for b in rest if id(b) not in new]
    reasons: dict[int, str] = {}
    if rest and root.grad_fn is not None and num_samples >= 2:
        new = _functional_stage(root, seeds, num_samples, rest, factors, config, samples,
                                reasons)
        taken.update({b.name: PATHS[2] for b in rest if id(b) in new})
        rest = [b for b in rest if id(b) not in new]
    if not rest:
        return
    npass = len(seeds)
    wanted = None if samples is None else (
        samples.unsqueeze(1) * npass + torch.arange(npass)).reshape(-1)
    if FORWARD_MODE_RATIO * sum(b.numel for b in rest) < num_samples * npass:
        try:
            forward_mode_rows(root, seeds, num_samples, rest, factors, config.dtype,
                              config.chunk_size, wanted)
        except RuntimeError as exc:  # no double backward through some op
            failed = f"forward mode failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            passed = set()
        else:
            # an op whose backward is not itself differentiable (once_differentiable, a detach
            # inside a custom backward) gives zeros here, not an error: checked like the
            # one-pass rows
            passed = (_checked(root, seeds, num_samples, rest, factors, config, samples)
                      if num_samples >= 2 else {id(b) for b in rest})
            failed = ("forward mode failed: its products disagree with a backward pass (an op "
                      "without a usable double backward)")
        taken.update({b.name: f"{PATHS[3]}: {reasons.get(id(b), 'no one-pass rule matched')}"
                      for b in rest if id(b) in passed})
        reasons.update({id(b): "; ".join(filter(None, (reasons.get(id(b)), failed)))
                        for b in rest if id(b) not in passed})
        rest = [b for b in rest if id(b) not in passed]
        if not rest:
            return
    if num_samples < 2:  # one sample: its rows are one backward pass per seed, nothing cheaper
        reasons.update({id(b): "a batch of one sample" for b in rest})
    taken.update({b.name: f"{PATHS[4]}: {reasons.get(id(b), 'no one-pass rule matched')}"
                  for b in rest})
    if num_samples >= 2:
        _warn_generic(rest, reasons, root)
    width = max(sum(b.numel for b in rest), min_row_elements)
    seeded_rows(root, seeds, num_samples, rest, factors, config.dtype, config.chunk_size,
                width * root.element_size(), wanted)
