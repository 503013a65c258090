"""Rows of a node that belong to the samples one by one, not S·T sample-major: which sample
each row is (docs/method.md §4.7, "Physics-informed closures take the one-pass rows")."""

from __future__ import annotations

import torch

from qnewton.curvature.per_sample.capture import capture
from qnewton.curvature.per_sample.handler import REFUSALS, SampleRows

#: A row's δ₂/δ₁ must be within this of an integer (the sample number + 1) in
#: :func:`map_sample_rows`, and every entry of δ₂ within ``MAP_RTOL`` of (σ + 1)·δ₁.
MAP_ATOL = 0.05
MAP_RTOL = {torch.float64: 1e-9, torch.float32: 1e-3}


def map_sample_rows(root: torch.Tensor, s: int, ctxs: dict[int, object],
                    nodes: dict[int, object], handler_of: dict[int, object],
                    params: list[torch.Tensor]) -> None:
    """Find the sample of every row of the nodes whose rows do not split into the S samples
    (:class:`~qnewton.curvature.per_sample.handler.SampleRows`: the model called on parts of
    the batch, the results joined), in place in ``ctxs`` (``None``: a node refused).

    Two backward passes, seeded with random positive weights ρ on every entry of ``root`` and
    with ``(s + 1)·ρ`` on sample s's: in a node whose row r depends on one sample σ(r) only,
    δ₂[r] = (σ(r) + 1)·δ₁[r] entry by entry. A row the seeds do not reach (δ₁ = 0) belongs to no
    sample; a row whose ratio is not such an integer (it mixes samples) refuses the node. The
    engine's check judges the rows either way.
    """
    todo = {k: n for k, n in nodes.items() if isinstance(ctxs.get(k), SampleRows)}
    if not todo:
        return
    gen = torch.Generator().manual_seed(0)
    rho = (torch.rand(root.shape, generator=gen, dtype=torch.float64) + 0.5).reshape(s, -1)
    number = torch.arange(1, s + 1, dtype=torch.float64).unsqueeze(1)
    try:
        first, _ = capture(root, rho.reshape(root.shape).to(root.dtype), todo, params)
        second, _ = capture(root, (rho * number).reshape(root.shape).to(root.dtype), todo,
                             params)
    except RuntimeError:
        first = second = {}
    for key in todo:
        try:
            a = handler_of[key].delta_rows(ctxs[key], first[key]).double()
            b = handler_of[key].delta_rows(ctxs[key], second[key]).double()
        except (KeyError, *REFUSALS):
            ctxs[key] = None
            continue
        sample = _row_samples(a, b, s, MAP_RTOL.get(first[key].dtype, 1e-3))
        ctxs[key] = None if sample is None else handler_of[key].with_samples(ctxs[key], sample)


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
