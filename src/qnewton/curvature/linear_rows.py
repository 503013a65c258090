"""Per-sample gradients of linear layers from ONE backward pass (a performance path, same result).

The generic path (:mod:`qnewton.curvature.fisher`) finds row s of the factor with a batched
backward seeded by the one-hot vector e_s: each of the S rows costs a backward pass over the
*whole* batch, O(S²) in total (minutes for S = 2048 and a 784-input MLP). For a parameter W used
only as the matrix of ``z = x Wᵀ (+ b)`` (``F.linear`` on 2-D inputs: ``addmm``/``mm`` nodes) with
one row of ``z`` per loss, the gradient of loss s is the outer product ``δ_s x_sᵀ`` (and ``δ_s``
for the bias), where ``δ = ∂(Σ losses)/∂z`` comes from ONE backward pass, provided loss s depends
only on row s (no coupling across samples) — Goodfellow (2015), "Efficient per-example gradient
computations". The graph is inspected for exactly these patterns; every other parameter takes the
generic path. Because coupling across samples (BatchNorm in training mode, a batch-normalized
loss) cannot be seen in the graph's structure, a few rows of the fast result are checked against
the generic computation; on a mismatch the fast result is discarded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from qnewton.curvature.autograd import BatchedVJP, flat_rows
from qnewton.curvature.memory import DEFAULT_CHUNK_BYTES, element_size
from qnewton.curvature.params import ParamBlock

if TYPE_CHECKING:
    from qnewton.curvature.config import CurvatureConfig

_FAST_CHECK_ROWS = 3


def _graph_nodes(root: object) -> list[object]:
    """All autograd nodes reachable from ``root`` (each once)."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(nf for nf, _ in node.next_functions if nf is not None)
    return list(seen.values())


def _accumulated_param(node: object, params: dict[int, torch.Tensor]) -> torch.Tensor | None:
    if type(node).__name__ != "AccumulateGrad":
        return None
    var = getattr(node, "variable", None)
    return var if var is not None and id(var) in params else None


def _linear_uses(
    losses: torch.Tensor, params: dict[int, torch.Tensor]
) -> tuple[dict[int, list[tuple[object, str]]], set[int]]:
    """For each parameter, its uses as ``(addmm/mm node, role)`` with role ``"wt"`` (used as
    ``Wᵀ``: ``z = x Wᵀ``), ``"w"`` (``z = x W``) or ``"bias"``; and the ids of parameters with
    any other use (those cannot take the fast path)."""
    uses: dict[int, list[tuple[object, str]]] = {}
    other: set[int] = set()
    for node in _graph_nodes(losses.grad_fn):
        kind = type(node).__name__
        if kind == "TBackward0":
            continue  # judged at its parents: every edge into a ``Wᵀ`` node is examined there
        for pos, (child, _) in enumerate(node.next_functions):
            if child is None:
                continue
            direct = _accumulated_param(child, params)
            via_t = None
            if type(child).__name__ == "TBackward0":
                (grand, _), = child.next_functions or ((None, 0),)
                via_t = _accumulated_param(grand, params) if grand is not None else None
            if direct is None and via_t is None:
                continue
            role = None
            if kind == "AddmmBackward0":
                role = {0: "bias", 2: "wt" if via_t is not None else "w"}.get(pos)
                if role == "bias" and direct is None:
                    role = None
            elif kind == "MmBackward0" and pos == 1:
                role = "wt" if via_t is not None else "w"
            target = direct if direct is not None else via_t
            if role is None:
                other.add(id(target))
            else:
                uses.setdefault(id(target), []).append((node, role))
    return uses, other


def _linear_inputs(node: object, s: int) -> torch.Tensor | None:
    """The saved 2-D input ``x`` (S·T×in) of an addmm/mm node with unit scaling, else ``None``.

    ``T > 1`` when the layer was applied to sequences (S, T, in): torch flattens them to S·T rows
    in sample-major order, and the per-sample gradient then sums over the T positions.
    """
    kind = type(node).__name__
    try:
        if kind == "AddmmBackward0":
            if float(node._saved_alpha) != 1.0 or float(node._saved_beta) != 1.0:
                return None
            x = node._saved_mat1
        else:
            x = node._saved_self
    except (AttributeError, RuntimeError, TypeError):
        return None
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] % s != 0:
        return None
    return x.detach()


def linear_per_sample_rows(
    losses: torch.Tensor,
    todo: Sequence[ParamBlock],
    factors: dict[int, torch.Tensor],
    config: CurvatureConfig,
) -> set[int]:
    """Fill the factors of blocks whose parameters are all plain linear-layer parameters with the
    per-sample gradients (fast path, see above); return the ids of the blocks filled."""
    s = losses.numel()
    if losses.grad_fn is None or s < 2:
        return set()
    params = {id(p): p for b in todo for p in b.params}
    try:
        uses, other = _linear_uses(losses, params)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return set()
    nodes: dict[int, object] = {}
    inputs: dict[int, torch.Tensor] = {}
    for pid, plist in uses.items():
        for node, _ in plist:
            if id(node) not in inputs:
                x = _linear_inputs(node, s)
                if x is None:
                    other.add(pid)
                    continue
                inputs[id(node)] = x
                nodes[id(node)] = node
    eligible = [
        b for b in todo if all(id(p) in uses and id(p) not in other for p in b.params)
    ]
    if not eligible:
        return set()
    # δ = ∂(Σ_s losses[s]) / ∂z for every linear node the eligible blocks use: one backward pass.
    wanted = {id(node) for b in eligible for p in b.params for node, _ in uses[id(p)]}
    deltas: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(key: int) -> Callable[[tuple[torch.Tensor | None, ...]], None]:
        def hook(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
            if grad_outputs and grad_outputs[0] is not None:
                deltas[key] = grad_outputs[0].detach()

        return hook

    eligible_params = [p for b in eligible for p in b.params]
    try:
        for key in wanted:
            handles.append(nodes[key].register_prehook(make_hook(key)))
        torch.autograd.grad(
            losses, eligible_params, grad_outputs=torch.ones_like(losses),
            retain_graph=True, allow_unused=True,
        )
    finally:
        for h in handles:
            h.remove()
    for key in wanted:
        d = deltas.get(key)
        if d is None or d.ndim != 2 or d.shape[0] != inputs[key].shape[0]:
            return set()

    def fill(p: torch.Tensor, dest: torch.Tensor, r0: int, r1: int) -> None:
        """Write the per-sample gradients of ``p`` for samples r0..r1 into ``dest`` (k, numel).

        With T positions per sample (sequence inputs), rows r0·T..r1·T of δ and x belong to the
        samples, and the gradient of sample s is Σ_t δ_{s,t} x_{s,t}ᵀ in the parameter's own
        (out, in) order — the layout ``p.grad`` uses, so no index permutation can creep in.
        """
        first = True
        k = r1 - r0
        for node, role in uses[id(p)]:
            t = inputs[id(node)].shape[0] // s
            d = deltas[id(node)][r0 * t : r1 * t].to(config.dtype).reshape(k, t, -1)
            if role == "bias":
                piece = d.sum(dim=1)
            else:
                x = inputs[id(node)][r0 * t : r1 * t].to(config.dtype).reshape(k, t, -1)
                a, c = (d, x) if role == "wt" else (x, d)
                piece = torch.bmm(a.transpose(1, 2), c).reshape(k, -1)
            if piece.shape[1] != p.numel():
                raise ValueError("shape mismatch")
            if first:
                dest.copy_(piece)
            else:
                dest.add_(piece)
            first = False

    row_bytes = max(b.numel for b in eligible) * element_size(config.dtype)
    k = max(1, min(s, DEFAULT_CHUNK_BYTES // max(1, row_bytes)))
    try:
        for b in eligible:
            factor = factors[id(b)]
            for r0 in range(0, s, k):
                r1 = min(s, r0 + k)
                col = 0
                for p in b.params:
                    fill(p, factor[r0:r1, col : col + p.numel()], r0, r1)
                    col += p.numel()
    except ValueError:
        return set()
    # Check a few rows against the generic computation (detects coupling across samples).
    check = sorted({0, s // 2, s - 1})[:_FAST_CHECK_ROWS]
    seeds = torch.zeros((len(check), s), dtype=losses.dtype, device=losses.device)
    seeds[torch.arange(len(check)), torch.tensor(check)] = 1
    exact = BatchedVJP()(losses, eligible_params, seeds)
    tol = max(1e-8, 1e3 * torch.finfo(losses.dtype).eps)
    refs, pos = {}, 0
    for b in eligible:
        piece = exact[pos : pos + len(b.params)]
        pos += len(b.params)
        refs[id(b)] = flat_rows(piece, len(check)).detach().to(config.dtype)
    # Errors are judged against the largest per-sample gradient of all checked blocks, so that a
    # block whose gradient is pure round-off (e.g. an attention key bias, to which softmax is
    # invariant) is not rejected for disagreeing in its noise.
    scale = max(float(torch.linalg.vector_norm(r, dim=1).max()) for r in refs.values())
    passed = set()
    for b in eligible:
        err = torch.linalg.vector_norm(factors[id(b)][check] - refs[id(b)], dim=1)
        if not bool((err > tol * scale + torch.finfo(config.dtype).tiny).any()):
            passed.add(id(b))
    return passed


