"""Per-sample gradients for any module: re-run the module alone per sample under ``vmap``.

For a parameter no one-pass handler understands (:mod:`~qnewton.curvature.per_sample.engine`),
take the innermost recorded module call that holds it (:mod:`~qnewton.curvature.per_sample.
recording`; e.g. ``nn.MultiheadAttention`` for its ``out_proj`` weights, which it uses
functionally). One backward pass per seed captures ``δ``, the gradient that reached the call's
output; the gradient of sample s is then the vector-Jacobian product of the module's map
``θ ↦ module(x_s; θ)`` with ``δ_s``:

    g_s = (∂ module(x_s; θ)/∂θ)ᵀ δ_s,

computed for a chunk of samples at once with ``torch.func.vmap`` over
``torch.func.vjp(functional_call(module, θ, x_s))``, each sample presented to the module as a
batch of one (its sample dimension kept, size 1) (the per-sample gradient recipe of
``torch.func``, applied to one module instead of the model). A module called several times
(shared weights) contributes the sum over its calls. Work is O(S) forward-and-backward passes of
that module only, not S backward passes over the whole batch.

Valid when the module treats samples independently (the sample dimension is dimension 0, or 1
for sequence-first layouts, of the tensors whose size there is S). Modules that couple samples
(BatchNorm in training mode), draw random numbers (dropout inside the module in training) or
that ``vmap`` cannot batch (fused recurrent kernels) are refused here with the reason, and
every result is checked against the generic path by the engine anyway (docs/method.md §4.7,
"Any model").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vjp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_flatten, tree_unflatten

from qnewton.curvature.memory import DEFAULT_CHUNK_BYTES
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample.causes import RECURRENT_FIX
from qnewton.curvature.per_sample.recording import ModuleCall, Recording


class ModuleRefused(ValueError):
    """The module cannot be re-run per sample; the message says why."""


def _sample_dim(t: object, s: int) -> int | None:
    """The dimension of ``t`` holding the S samples (0, else 1), or ``None`` (shared)."""
    if not isinstance(t, torch.Tensor) or t.ndim == 0:
        return None
    if t.shape[0] == s:
        return 0
    if t.ndim >= 2 and t.shape[1] == s:
        return 1
    return None


def live_calls(recording: Recording | None, graph: set[int]) -> list[ModuleCall]:
    """The recorded calls whose outputs belong to the graph (ids of its nodes)."""
    if recording is None:
        return []
    return [c for c in recording.calls
            if any(id(t.grad_fn) in graph for t in c.output_tensors())]


def owners(calls: Sequence[ModuleCall], params: Sequence[torch.Tensor]
           ) -> dict[int, nn.Module]:
    """For each parameter (by id), the innermost called module that holds it (fewest
    parameters); parameters held by no called module are absent."""
    size: dict[int, int] = {}
    held: dict[int, set[int]] = {}
    for c in calls:
        m = c.module
        if id(m) not in held:
            ps = {id(p) for p in m.parameters()}
            held[id(m)], size[id(m)] = ps, len(ps)
    found: dict[int, nn.Module] = {}
    for p in params:
        best = None
        for c in calls:
            m = c.module
            if id(p) in held[id(m)] and (best is None or size[id(m)] < size[id(best)]):
                best = m
        if best is not None:
            found[id(p)] = best
    return found


def _names(module: nn.Module, wanted: Sequence[torch.Tensor]) -> list[str]:
    by_id = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), name)
    return [by_id[id(p)] for p in wanted]


def _per_position_hint(leaves: Sequence[Any], s: int) -> str:
    """What to do when an input is (B, T, ...) with B·T = S: the losses are per position of
    sequences (per-token losses flattened), which a recurrence or attention couples."""
    shapes = [tuple(t.shape[:2]) for t in leaves if isinstance(t, torch.Tensor) and t.ndim >= 2
              and t.shape[0] * t.shape[1] == s]
    if not shapes:
        return ""
    return (f" (the losses look like per-position losses of {shapes[0][0]} sequences of "
            f"{shapes[0][1]} flattened; one loss per sequence, summed over its positions, "
            "takes the one-pass rows)")


def call_rows(call: ModuleCall, params: Sequence[torch.Tensor], deltas: Sequence[Any],
              s: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Per-sample gradients ``(S, *p.shape)`` (in ``dtype``) of each of ``params`` through this
    one call of its module, seeded at its output tensors with ``deltas`` (``None``: no gradient
    reached that output). Chunked so that a chunk's rows stay within the chunk budget."""
    module = call.module
    names = _names(module, params)
    leaves, spec = tree_flatten((call.args, call.kwargs))
    dims = [_sample_dim(t, s) for t in leaves]
    if all(d is None for d in dims):
        raise ModuleRefused(f"no input of {type(module).__name__} has the {s} samples in "
                            f"dimension 0 or 1{_per_position_hint(leaves, s)}")
    outs = call.output_tensors()
    out_leaves, _ = tree_flatten(call.output)
    out_pos = [i for i, t in enumerate(out_leaves)
               if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    out_dims = [_sample_dim(t, s) for t in outs]
    if any(d is None for d in out_dims):
        # a fused GRU/LSTM fed a PackedSequence (its output is packed): its twin takes it
        fix = (f"; {RECURRENT_FIX.format(kinds=type(module).__name__)}"
               if type(module) in (nn.GRU, nn.LSTM) else "")
        raise ModuleRefused(f"an output of {type(module).__name__} has no sample dimension{fix}")
    cot = [torch.zeros_like(t) if d is None else d for t, d in zip(outs, deltas, strict=True)]
    batched = [i for i, d in enumerate(dims) if d is not None]
    buffers = {n: b.detach().clone() for n, b in module.named_buffers(remove_duplicate=False)}
    primals = tuple(p.detach() for p in params)

    def one(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs, cots = xs[: len(batched)], xs[len(batched):]
        vals = list(leaves)
        for i, x in zip(batched, inputs, strict=True):
            vals[i] = x.unsqueeze(dims[i])  # a batch of one: what the module was written for
        args, kwargs = tree_unflatten(vals, spec)

        def run(*ps: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = functional_call(module, {**buffers, **dict(zip(names, ps, strict=True))},
                                  tuple(args), kwargs)
            flat, _ = tree_flatten(out)
            return tuple(flat[i].squeeze(d) for i, d in zip(out_pos, out_dims, strict=True))

        _, pull = vjp(run, *primals)
        return pull(tuple(cots))

    per_sample = sum(t.numel() for t in leaves if isinstance(t, torch.Tensor)) // s
    per_sample += sum(t.numel() for t in outs) // s + sum(p.numel() for p in params)
    k = max(1, min(s, DEFAULT_CHUNK_BYTES // max(1, 8 * per_sample)))
    fn = vmap(one, in_dims=tuple([dims[i] for i in batched] + out_dims), randomness="error")
    pieces: list[list[torch.Tensor]] = [[] for _ in params]
    for r0 in range(0, s, k):
        r1 = min(s, r0 + k)
        xs = [leaves[i].narrow(dims[i], r0, r1 - r0).detach() for i in batched]
        cs = [c.narrow(d, r0, r1 - r0).detach() for c, d in zip(cot, out_dims, strict=True)]
        try:
            with sdpa_kernel(SDPBackend.MATH):  # the fused CPU kernels have no batching rule
                grads = fn(*xs, *cs)
        except Exception as exc:  # vmap, functional_call, a module's own checks
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModuleRefused(f"{type(module).__name__} cannot be re-run per sample under "
                                f"vmap: {first[:160]}") from exc
        for lst, g in zip(pieces, grads, strict=True):
            lst.append(g.detach().to(dtype))
    return [torch.cat(lst) for lst in pieces]


def functional_rows(root: torch.Tensor, seeds: Sequence[torch.Tensor], s: int,
                    todo: Sequence[ParamBlock], calls: Sequence[ModuleCall],
                    dtype: torch.dtype) -> tuple[dict[int, list[torch.Tensor]], dict[int, str],
                                                  list[dict[int, torch.Tensor]]]:
    """Per-sample rows of the blocks in ``todo`` from their modules' recorded ``calls``.

    Returns ``(rows, refused, grads)``: ``rows[id(block)][j]`` is the ``(S, N)`` matrix of the
    per-sample gradients of ``⟨seeds[j], root⟩`` through the modules' calls; ``refused`` maps
    the ids of blocks with no usable module to the reason; ``grads[j]`` maps the ids of the
    parameters of the filled blocks to the full gradient of ``⟨seeds[j], root⟩`` (for the
    engine's residual).
    """
    params = [p for b in todo for p in b.params]
    owner = owners(calls, params)
    refused: dict[int, str] = {}
    for b in todo:
        missing = [p for p in b.params if id(p) not in owner]
        if missing:
            refused[id(b)] = "no recorded module call holds it (parameter used outside modules)"
    ok = [b for b in todo if id(b) not in refused]
    by_module: dict[int, list[torch.Tensor]] = {}
    for b in ok:
        for p in b.params:
            by_module.setdefault(id(owner[id(p)]), []).append(p)
    used = [c for c in calls if id(c.module) in by_module]
    rows: dict[int, list[torch.Tensor]] = {id(b): [] for b in ok}
    grads: list[dict[int, torch.Tensor]] = []
    for seed in seeds:
        outs = [t for c in used for t in c.output_tensors()]
        captured: dict[int, torch.Tensor] = {}
        handles = [t.register_hook(lambda g, key=i, into=captured: into.__setitem__(
            key, g.detach())) for i, t in enumerate(outs)]
        try:
            live = [p for b in ok for p in b.params]
            g = torch.autograd.grad(root, live, grad_outputs=seed, retain_graph=True,
                                    allow_unused=True) if live else ()
        finally:
            for h in handles:
                h.remove()
        grads.append({id(p): torch.zeros_like(p) if gi is None else gi.detach()
                      for gi, p in zip(g, live, strict=True)})
        per_param: dict[int, torch.Tensor] = {}
        pos = 0
        for c in used:
            n_out = len(c.output_tensors())
            deltas = [captured.get(pos + i) for i in range(n_out)]
            pos += n_out
            ps = by_module[id(c.module)]
            if all(d is None for d in deltas):
                continue
            try:
                got = call_rows(c, ps, deltas, s, dtype)
            except ModuleRefused as exc:
                for b in ok:
                    if any(id(p) in {id(q) for q in ps} for p in b.params):
                        refused.setdefault(id(b), str(exc))
                continue
            for p, r in zip(ps, got, strict=True):
                per_param[id(p)] = r if id(p) not in per_param else per_param[id(p)] + r
        for b in ok:
            if id(b) in refused:
                continue
            rows[id(b)].append(torch.cat([
                per_param[id(p)].reshape(s, -1) if id(p) in per_param
                else torch.zeros((s, p.numel()), dtype=dtype, device=p.device)
                for p in b.params], dim=1))
    return {k: v for k, v in rows.items() if k not in refused}, refused, grads
