"""The layout probe: which nodes see their rows time-major (``t·S + s``, a sequence-first
layout) rather than sample-major, found with one backward pass (docs/method.md §4.7)."""

from __future__ import annotations

import torch

from qnewton.curvature.per_sample.capture import capture, one_sample_seed
from qnewton.curvature.per_sample.graph import Use
from qnewton.curvature.per_sample.handler import REFUSALS, NodeHandler, SampleRows


def probe_layouts(root: torch.Tensor, s: int, uses: dict[int, list[Use]],
                  ctxs: dict[int, object], nodes: dict[int, object],
                  params: dict[int, torch.Tensor],
                  handler_of: dict[int, NodeHandler]) -> dict[int, str]:
    """Reorder the rows of nodes that see them time-major (``t·S + s``, a sequence-first
    layout such as ``nn.MultiheadAttention``'s) into sample-major order, in place in ``ctxs``.

    One backward pass seeded on sample 0's part of ``root`` only: in a node whose samples are
    independent, δ is nonzero only on sample 0's rows — rows ``0 … T−1`` if sample-major, rows
    ``0, S, 2S, …`` if time-major. Nodes whose δ fits neither (or T = 1) are left as they are;
    the engine's check judges every result either way. Returns what was found, node by node
    (part of the key under which a passed check is kept: a layout left unknown, e.g. sample 0's
    δ exactly 0, must be checked again).
    """
    # rows mapped to their samples one by one (:func:`map_sample_rows`) have no layout to find
    # nor do nodes known to have one row per sample
    probe = {k: n for k, n in nodes.items()
             if ctxs.get(k) is not None and not isinstance(ctxs[k], SampleRows)
             and getattr(handler_of[k], "reorderable", False)
             and handler_of[k].row_count(ctxs[k]) != s}
    if not probe:
        return {}
    try:
        used = [params[pid] for pid, plist in uses.items()
                if any(id(u.node) in probe for u in plist)]
        deltas, _ = capture(root, one_sample_seed(root, s, 0), probe, used)
    except RuntimeError:
        return dict.fromkeys(probe, "failed")
    return {k: _layout(handler_of[k], ctxs, k, deltas.get(k), s) for k in probe}


def _layout(handler: object, ctxs: dict[int, object], key: int, delta: torch.Tensor | None,
            s: int) -> str:
    """One node's part of :func:`probe_layouts` (``ctxs[key]`` reordered when time-major)."""
    if delta is None:
        return "unreached"
    try:
        rows = handler.delta_rows(ctxs[key], delta)
    except REFUSALS:
        return "refused"
    r = rows.shape[0]
    if r % s or r == s:
        return "one row per sample" if r == s else "not S·T rows"
    t = r // s
    hit = (rows != 0).any(dim=1).nonzero().flatten()
    if hit.numel() == 0:
        return "nothing to see"
    if bool((hit < t).all()):
        return "sample-major"
    if not bool((hit % s == 0).all()):
        return "neither"
    try:
        ctxs[key] = handler.reorder(ctxs[key], torch.arange(r).reshape(t, s).T.reshape(-1))
    except REFUSALS:
        ctxs[key] = None
        return "refused"
    return "time-major"
