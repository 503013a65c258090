"""K-FAC: Kronecker-factored empirical Fisher blocks for Linear and Conv layers.

For every block that is one layer's weight, bias, or weight and bias (``grouping="module"``),
found in the closure's autograd graph (``addmm``/``mm`` of ``F.linear``; a non-transposed,
ungrouped 1-D/2-D convolution), the block is ``G ⊗ A`` (:class:`~qnewton.curvature.kronecker.
KroneckerBlock`) with, over the k curvature samples and the P positions of each (P = 1 for a
Linear layer on ``(S, in)`` inputs; the sequence length, or the output positions of a
convolution, Grosse & Martens 2016 "KFC" §3):

* ``A = (1/k) Σ_s Σ_p ā_{s,p} ā_{s,p}ᵀ`` — the layer inputs (the unfolded patches of a
  convolution) with a 1 appended for the bias;
* ``G = (1/(k·P)) Σ_s Σ_p δ_{s,p} δ_{s,p}ᵀ`` — ``δ_{s,p} = ∂ℓ_s/∂z_{s,p}``, the gradient of sample
  s's own loss at the layer's output, from one backward pass of ``Σ_s ℓ_s`` (so no factor S).

``G ⊗ A`` then approximates the empirical Fisher ``(1/k) Σ_s g_s g_sᵀ`` of the ``fisher`` kind:
exactly when P = 1 and ``δ`` and ``ā`` are independent (Martens & Grosse 2015 §3); with P > 1 it
also assumes positions uncorrelated (KFC's "spatially uncorrelated derivatives").

The inputs and output gradients come from the nodes' saved tensors (the per-sample handlers'
:meth:`prepare`) and a backward pre-hook on the node — the same objects the one-pass per-sample
path reads — so no module hooks and no model object are needed. Every other block (parameters
of other layers, shared weights, a layer used twice) is an empirical Fisher factor block
(:class:`~qnewton.curvature.fisher.FisherCurvature`), recorded as such in ``inputs.paths``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from qnewton.curvature.fisher import FisherCurvature
from qnewton.curvature.kind import BuildInputs, CurvatureKind
from qnewton.curvature.kronecker import KroneckerBlock
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample.graph import parameter_uses
from qnewton.curvature.per_sample.handler import Unsupported
from qnewton.curvature.per_sample.handlers import handlers_by_node_type
from qnewton.curvature.products import ProductContext
from qnewton.curvature.representation import ARITHMETIC_DTYPE, CurvatureBlock

#: The path recorded for a block built as a Kronecker product (``BuildInputs.paths``).
KRONECKER_PATH = "kronecker"

#: Bytes of one chunk of unfolded convolution patches (bounded like the per-sample engine's).
_CHUNK_BYTES = 1 << 26


@dataclass(frozen=True)
class LayerUse:
    """One Kronecker-eligible block: the node it is used in and how."""

    block: ParamBlock
    node: object
    conv: bool
    has_weight: bool
    has_bias: bool
    weight_first: bool


def _eligible(block: ParamBlock, uses: dict, other: set[int]) -> LayerUse | None:
    """The single layer node a block's tensors are all used in (weight as ``Wᵀ`` of a linear
    map or as a convolution's weight, bias of the same node), else ``None``."""
    roles = {}
    nodes = set()
    for p in block.params:
        plist = uses.get(id(p), [])
        if id(p) in other or len(plist) != 1:
            return None
        use = plist[0]
        nodes.add(id(use.node))
        roles[id(p)] = use
    if len(nodes) != 1 or len(block.params) > 2:
        return None
    node = next(iter(roles.values())).node
    conv = type(node).__name__ == "ConvolutionBackward0"
    kinds = [roles[id(p)].role for p in block.params]
    weight_role = "weight" if conv else "wt"
    if any(r not in (weight_role, "bias") for r in kinds) or len(set(kinds)) != len(kinds):
        return None
    return LayerUse(block, node, conv, weight_role in kinds, "bias" in kinds,
                    kinds[0] == weight_role)


def _capture_deltas(root: torch.Tensor, nodes: dict[int, object],
                    params: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """δ (the gradient flowing into each node's output) from one backward pass of ``Σ root``,
    differentiating towards ``params`` (the graph is retained for later passes)."""
    deltas: dict[int, torch.Tensor] = {}

    def make_hook(key: int):
        def hook(grad_outputs):
            if grad_outputs and grad_outputs[0] is not None:
                deltas[key] = grad_outputs[0].detach()
        return hook

    handles = [node.register_prehook(make_hook(k)) for k, node in nodes.items()]
    try:
        torch.autograd.grad(root, params, grad_outputs=torch.ones_like(root),
                            retain_graph=True, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return deltas


def _rows(x: torch.Tensor, s: int, samples: torch.Tensor | None) -> torch.Tensor:
    """The rows of the k selected samples of a sample-major ``(S·T, ...)`` tensor."""
    if samples is None:
        return x
    t = x.shape[0] // s
    return x.reshape(s, t, *x.shape[1:])[samples.to(x.device)].reshape(-1, *x.shape[1:])


def linear_factors(x: torch.Tensor, delta: torch.Tensor, k: int, has_weight: bool,
                   has_bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, G)`` of a linear layer from its inputs ``x`` ``(k·T, in)`` and output gradients
    ``δ`` ``(k·T, out)`` (module docstring), in float64."""
    x, delta = x.to(ARITHMETIC_DTYPE), delta.to(ARITHMETIC_DTYPE)
    positions = x.shape[0] // k
    parts = ([x] if has_weight else []) + ([x.new_ones(x.shape[0], 1)] if has_bias else [])
    abar = torch.cat(parts, dim=1)
    return abar.T @ abar / k, delta.T @ delta / (k * positions)


def conv_factors(conv, delta: torch.Tensor, k: int, has_weight: bool,
                 has_bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, G)`` of a convolution (``conv``: the per-sample handler's context, input ``x``
    ``(k·T, C_in, *spatial)``, stride, padding, dilation; groups = 1) from its output gradients
    ``δ`` ``(k·T, C_out, *out_spatial)``; the patches are unfolded chunk by chunk."""
    x = conv.x
    kernel, stride = tuple(conv.weight_shape[2:]), tuple(conv.stride)
    padding, dilation = tuple(conv.padding), tuple(conv.dilation)
    if x.ndim == 3:  # Conv1d as an image of height 1
        x = x.unsqueeze(2)
        kernel, stride = (1, *kernel), (1, *stride)
        padding, dilation = (0, *padding), (1, *dilation)
    c_out = delta.shape[1]
    d = delta.to(ARITHMETIC_DTYPE).reshape(delta.shape[0], c_out, -1)  # (k·T, C_out, L)
    positions = (d.shape[0] // k) * d.shape[2]
    g = torch.einsum("nol,npl->op", d, d) / (k * positions)
    d_in = x.shape[1] * int(torch.Size(kernel).numel()) if has_weight else 0
    d_a = d_in + (1 if has_bias else 0)
    a = torch.zeros(d_a, d_a, dtype=ARITHMETIC_DTYPE, device=x.device)
    step = max(1, _CHUNK_BYTES // max(1, d_a * d.shape[2] * 8))
    for r0 in range(0, x.shape[0], step):
        chunk = x[r0:r0 + step].to(ARITHMETIC_DTYPE)
        n = chunk.shape[0]
        parts = []
        if has_weight:
            cols = F.unfold(chunk, kernel_size=kernel, dilation=dilation, padding=padding,
                            stride=stride)  # (n, C_in·K, L), channel-major like the weight
            if cols.shape[2] != d.shape[2]:
                raise Unsupported("δ positions do not match the convolution patches")
            parts.append(cols)
        if has_bias:
            parts.append(chunk.new_ones(n, 1, d.shape[2]))
        abar = torch.cat(parts, dim=1)
        a += torch.einsum("nil,njl->ij", abar, abar)
    return a / k, g


def kronecker_blocks(inputs: BuildInputs) -> dict[int, KroneckerBlock]:
    """The Kronecker blocks (by ``id`` of their :class:`ParamBlock`) of every block to build
    that is one Linear/Conv layer's weight and/or bias; other blocks are left out."""
    losses, s = inputs.losses, inputs.num_samples
    todo = [b for b, ok in zip(inputs.blocks, inputs.built, strict=True) if ok]
    if losses.grad_fn is None or s < 1 or losses.numel() != s or not todo:
        return {}
    params = {id(p): p for b in todo for p in b.params}
    handlers = handlers_by_node_type()
    try:
        uses, other = parameter_uses(losses.grad_fn, params, handlers)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return {}
    layers = [u for u in (_eligible(b, uses, other) for b in todo) if u is not None]
    ctxs = {}
    for layer in layers:
        handler = handlers[type(layer.node).__name__]
        try:
            ctx = handler.prepare(layer.node, s)
        except (Unsupported, ValueError, TypeError, AttributeError, RuntimeError):
            continue
        if layer.conv and ctx.groups != 1:
            continue
        ctxs[id(layer.block)] = ctx
    layers = [u for u in layers if id(u.block) in ctxs]
    if not layers:
        return {}
    nodes = {id(u.node): u.node for u in layers}
    deltas = _capture_deltas(losses, nodes, [p for u in layers for p in u.block.params])
    k = inputs.curvature_samples
    out: dict[int, KroneckerBlock] = {}
    for u in layers:
        delta, ctx = deltas.get(id(u.node)), ctxs[id(u.block)]
        if delta is None:
            continue
        try:
            if u.conv:
                conv = replace(ctx, x=_rows(ctx.x, s, inputs.samples))
                a, g = conv_factors(conv, _rows(delta, s, inputs.samples), k, u.has_weight,
                                    u.has_bias)
            else:
                if isinstance(ctx, tuple) or delta.ndim != 2:
                    continue  # a time-major layout (the engine reorders it): not handled here
                a, g = linear_factors(_rows(ctx, s, inputs.samples),
                                      _rows(delta, s, inputs.samples), k, u.has_weight,
                                      u.has_bias)
        except (Unsupported, RuntimeError, ValueError):
            continue
        block = KroneckerBlock(u.block.name, KFACCurvature.name, a, g, has_weight=u.has_weight,
                               has_bias=u.has_bias, weight_first=u.weight_first)
        if block.n != u.block.numel:
            continue  # a layout this reading does not model: the Fisher factor instead
        out[id(u.block)] = block
    return out


class KFACCurvature(CurvatureKind):
    """Kronecker-factored empirical Fisher (K-FAC) per Linear/Conv layer, the empirical Fisher
    factor form for every other block (module docstring; docs/method.md §4.7, "Kronecker-factored
    blocks (K-FAC)").

    Storage: a Kronecker block holds ``d_a² + d_out²`` numbers; the budget is checked against
    the fallback's ``S·N`` (an upper bound whenever ``d_a + d_out ≤ S``), since the kind cannot
    tell before building which form a block takes.
    """

    name = "kfac"
    auto_grouping = "module"  # a block that spans layers has no Kronecker factors
    psd = True
    has_matrix_free = True

    def __init__(self) -> None:
        self._fisher = FisherCurvature()

    def stored_elements(self, n: int, num_samples: int, num_outputs: int) -> int:
        return self._fisher.stored_elements(n, num_samples, num_outputs)

    def storage(self, n: int, num_samples: int, num_outputs: int, dtype_name: str) -> str:
        return ("as two Kronecker factors (Linear/Conv layers) or "
                + self._fisher.storage(n, num_samples, num_outputs, dtype_name))

    def budget_advice(self, num_samples: int, num_outputs: int) -> str:
        return self._fisher.budget_advice(num_samples, num_outputs)

    def build(self, inputs: BuildInputs) -> list[CurvatureBlock | None]:
        kron = kronecker_blocks(inputs)
        rest = [ok and id(b) not in kron for b, ok in zip(inputs.blocks, inputs.built,
                                                            strict=True)]
        fisher = self._fisher.build(replace(inputs, built=rest)) if any(rest) else [
            None] * len(rest)
        for b in inputs.blocks:
            if id(b) in kron:
                inputs.paths[b.name] = KRONECKER_PATH
        return [kron.get(id(b), f) for b, f in zip(inputs.blocks, fisher, strict=True)]

    def matrix_free(self, block: ParamBlock, grads: Sequence[torch.Tensor],
                    ctx: ProductContext) -> CurvatureBlock:
        return self._fisher.matrix_free(block, grads, ctx)
