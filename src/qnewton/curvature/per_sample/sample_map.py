"""Rows of a node that belong to the samples one by one, not S·T sample-major: which sample
each row is (docs/method.md §4.7, "Physics-informed closures take the one-pass rows")."""

from __future__ import annotations

from collections import OrderedDict

import torch

from qnewton.curvature.per_sample.capture import capture
from qnewton.curvature.per_sample.handler import REFUSALS, SampleRows

#: A row's δ₂/δ₁ must be within this of an integer (the sample number + 1) in
#: :func:`map_sample_rows`, and every entry of δ₂ within ``MAP_RTOL`` of (σ + 1)·δ₁.
MAP_ATOL = 0.05
MAP_RTOL = {torch.float64: 1e-9, torch.float32: 1e-3}


#: Maps found at earlier steps, by the graph's signature (:func:`signature`): a training loop
#: builds the same graph at every step, and its maps are the same. Bounded; the engine forgets
#: a map whose rows then fail its check (:func:`forget`), so a graph that only looks the same
#: costs the two probing passes again, never wrong rows.
_KNOWN: OrderedDict[tuple, list[torch.Tensor | None]] = OrderedDict()
KNOWN_MAX = 16


def signature(root: torch.Tensor, s: int, todo: dict[int, object],
              ctxs: dict[int, object]) -> tuple:
    """The samples, the root's shape, and each node to map's type and input shape, in order."""
    return (s, tuple(root.shape), tuple((type(node).__name__, tuple(ctxs[key].x.shape))
                                        for key, node in todo.items()))


def forget(sig: tuple | None) -> None:
    """Drop the map kept for ``sig`` (its rows failed the engine's check)."""
    if sig is not None:
        _KNOWN.pop(sig, None)


def kept_map(sig: tuple | None) -> list[torch.Tensor | None]:
    """The map kept for ``sig`` (empty when none)."""
    return [] if sig is None else list(_KNOWN.get(sig, []))


def map_sample_rows(root: torch.Tensor, s: int, ctxs: dict[int, object],
                    nodes: dict[int, object], handler_of: dict[int, object],
                    params: list[torch.Tensor]) -> tuple | None:
    """Find the sample of every row of the nodes whose rows do not split into the S samples
    (:class:`~qnewton.curvature.per_sample.handler.SampleRows`: the model called on parts of
    the batch, the results joined), in place in ``ctxs`` (``None``: a node refused).

    Two backward passes, seeded with random positive weights ρ on every entry of ``root`` and
    with ``(s + 1)·ρ`` on sample s's: in a node whose row r depends on one sample σ(r) only,
    δ₂[r] = (σ(r) + 1)·δ₁[r] entry by entry. A row the seeds do not reach (δ₁ = 0) belongs to no
    sample; a row whose ratio is not such an integer (it mixes samples) refuses the node. The
    engine's check judges the rows either way. A graph with the signature of an earlier one
    takes its map without probing (:data:`_KNOWN`). Returns the signature, ``None`` when no node
    needed a map.
    """
    todo = {k: n for k, n in nodes.items() if isinstance(ctxs.get(k), SampleRows)}
    if not todo:
        return None
    sig = signature(root, s, todo, ctxs)
    known = _KNOWN.get(sig)
    if known is not None:
        _KNOWN.move_to_end(sig)
        for key, sample in zip(todo, known, strict=True):
            ctxs[key] = None if sample is None else handler_of[key].with_samples(ctxs[key],
                                                                                sample)
        return sig
    gen = torch.Generator().manual_seed(0)
    rho = (torch.rand(root.shape, generator=gen, dtype=torch.float64) + 0.5).reshape(s, -1)
    number = torch.arange(1, s + 1, dtype=torch.float64).unsqueeze(1)
    try:
        first, _ = capture(root, rho.reshape(root.shape).to(root.dtype), todo, params)
        second, _ = capture(root, (rho * number).reshape(root.shape).to(root.dtype), todo,
                             params)
    except RuntimeError:
        first = second = {}
    found: list[torch.Tensor | None] = []
    for key in todo:
        try:
            a = handler_of[key].delta_rows(ctxs[key], first[key]).double()
            b = handler_of[key].delta_rows(ctxs[key], second[key]).double()
        except (KeyError, *REFUSALS):
            sample = None
        else:
            sample = _row_samples(a, b, s, MAP_RTOL.get(first[key].dtype, 1e-3))
        found.append(sample)
        ctxs[key] = None if sample is None else handler_of[key].with_samples(ctxs[key], sample)
    _KNOWN[sig] = found
    while len(_KNOWN) > KNOWN_MAX:
        _KNOWN.popitem(last=False)
    return sig


def _row_samples(a: torch.Tensor, b: torch.Tensor, s: int, rtol: float) -> torch.Tensor | None:
    """``σ`` ``(R,)`` with ``b[r] = (σ[r] + 1)·a[r]`` (−1 where ``a[r] = 0``), or ``None``."""
    mag = a.abs()
    top = mag.argmax(dim=1, keepdim=True)
    reached = mag.amax(dim=1) > 0
    ratio = (b.gather(1, top) / a.gather(1, top).where(reached.unsqueeze(1), 1.0)).squeeze(1)
    number = ratio.round()
    ok = ((ratio - number).abs() <= MAP_ATOL) & (number >= 1) & (number <= s)
    scale = b.abs().amax(dim=1, keepdim=True)
    ok &= ((b - number.unsqueeze(1) * a).abs() <= rtol * scale).all(dim=1)
    if not bool(ok[reached].all()):
        return None
    return torch.where(reached, number.long() - 1, -1)
