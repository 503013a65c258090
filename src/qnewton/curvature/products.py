"""Curvature-vector products on the closure's retained graph: blocks too big to store.

A block whose dense matrix or factor would exceed ``max_block_bytes`` is not built; it becomes a
:class:`~qnewton.curvature.representation.MatrixFreeBlock` whose ``H v`` is computed here, from
the autograd graph the closure built, without ever holding more than a few N-vectors
(docs/method.md §4.7, "Matrix-free blocks"):

* **Hessian**: ``H v = ∂(gᵀv)/∂θ_b`` — one double backward through the mean-loss gradient ``g``
  (kept with its graph);
* **empirical Fisher**: ``F v = (1/S)·Jᵀ(J v)`` with ``J = ∂losses/∂θ_b`` (S×N);
* **GGN**: ``G v = (1/S)·Jᵀ(H⁺ (J v))`` with ``J = ∂outputs/∂θ_b`` (S·C×N) and ``H⁺`` the per-sample
  loss Hessians ``∂²ℓ_s/∂z_s²`` with negative eigenvalues clamped to 0 (the dense GGN's ``R_s²``).

``J v`` (a forward-mode product) is obtained from reverse mode by the double-backward trick:
``w(u) = Jᵀu`` is built once with ``create_graph`` from a dummy ``u = 0``; since ``w`` is linear in
``u``, ``∂(wᵀv)/∂u = J v``. ``Jᵀ y`` is one ordinary backward pass. A product therefore costs two
backward passes (one through the double-backward graph), whatever N is.

Diagonals. The Fisher's and the GGN's are exact: ``diag = (1/S)·Σ_rows (row)²`` over the factor rows
(per-sample gradients, or ``J_sᵀ R_s[:, c]``), computed chunk by chunk and never stored (the cost
of one per-sample pass, memory of one chunk). The exact Hessian's diagonal would need N products;
it is not offered (a representation then states an upper bound on its largest entry instead).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from qnewton.curvature.autograd import BatchedVJP, flat_rows
from qnewton.curvature.loss_hessian import loss_hessian_sqrt
from qnewton.curvature.memory import chunk_rows
from qnewton.curvature.params import ParamBlock
from qnewton.curvature.representation import MatrixFreeBlock

Product = Callable[[torch.Tensor], torch.Tensor]


class ProductSettings(Protocol):
    """What the products need of a :class:`~qnewton.curvature.CurvatureConfig`."""

    chunk_size: int | None
    dtype: torch.dtype


def split_flat(v: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A flat ``(N,)`` vector as tensors shaped like ``params``, in their dtype."""
    sizes = [p.numel() for p in params]
    return [piece.reshape(p.shape).to(p.dtype)
            for piece, p in zip(v.split(sizes), params, strict=True)]


def _flat(pieces: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor],
          dtype: torch.dtype) -> torch.Tensor:
    """Concatenate per-parameter results (``None``: zero) into a flat ``(N,)`` vector."""
    return torch.cat([
        (torch.zeros(p.numel(), dtype=dtype, device=p.device) if t is None
         else t.detach().reshape(-1).to(dtype))
        for t, p in zip(pieces, params, strict=True)
    ])


def hessian_product(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
                    dtype: torch.dtype) -> Product:
    """``v ↦ H v`` with ``H = ∂²L/∂θ_b²``, from the block's mean-loss gradient pieces ``grads``
    (computed with ``create_graph=True``) by one double backward of ``gᵀv``."""
    live = [i for i, g in enumerate(grads) if g.requires_grad]

    def product(v: torch.Tensor) -> torch.Tensor:
        if not live:  # the loss is at most linear in the block: H = 0
            return torch.zeros_like(v)
        pieces = split_flat(v, params)
        out = torch.autograd.grad([grads[i] for i in live], params,
                                  grad_outputs=[pieces[i].to(grads[i].dtype) for i in live],
                                  retain_graph=True, allow_unused=True)
        return _flat(out, params, dtype)

    return product


class JacobianProducts:
    """Products with ``J = ∂y/∂θ_b`` for a tensor ``y`` of the graph (losses ``(S,)`` or outputs):
    ``J v`` by the double-backward trick, ``Jᵀ u`` by one backward pass."""

    def __init__(self, y: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        self.y, self.params = y, list(params)
        self.u = torch.zeros_like(y, requires_grad=True)
        w = torch.autograd.grad(y, self.params, grad_outputs=self.u, create_graph=True,
                                retain_graph=True, allow_unused=True)
        self.live = [(i, t) for i, t in enumerate(w) if t is not None and t.requires_grad]

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``J v`` for a flat ``(N,)`` vector, shaped like ``y``."""
        if not self.live:
            return torch.zeros_like(self.y).detach()
        pieces = split_flat(v, self.params)
        (jv,) = torch.autograd.grad([t for _, t in self.live], self.u,
                                    grad_outputs=[pieces[i].to(t.dtype) for i, t in self.live],
                                    retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.y).detach() if jv is None else jv.detach()

    def vjp(self, u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``Jᵀ u`` for ``u`` shaped like ``y``, flat ``(N,)`` in ``dtype``."""
        out = torch.autograd.grad(self.y, self.params, grad_outputs=u.to(self.y.dtype),
                                  retain_graph=True, allow_unused=True)
        return _flat(out, self.params, dtype)


def _square_row_sums(y: torch.Tensor, params: Sequence[torch.Tensor], seeds_for: Callable[
        [int, int], torch.Tensor], rows: int, n: int, config: ProductSettings) -> torch.Tensor:
    """``Σ_r (row_r)²`` over ``rows`` factor rows ``row_r = (∂y/∂θ)ᵀ seed_r``, in chunks."""
    vjp = BatchedVJP()
    k = chunk_rows(config.chunk_size, rows, n * y.element_size())
    acc = torch.zeros(n, dtype=config.dtype, device=y.device)
    for r0 in range(0, rows, k):
        r1 = min(rows, r0 + k)
        block_rows = flat_rows(vjp(y, params, seeds_for(r0, r1)), r1 - r0).detach()
        acc += block_rows.to(config.dtype).square().sum(dim=0)
    return acc


@dataclass
class ProductContext:
    """What the products of one evaluated closure share: the losses, outputs, S, C, settings,
    and (computed once, for the GGN) the clamped loss Hessians ``H⁺`` and their roots ``R``."""

    losses: torch.Tensor
    outputs: torch.Tensor | None
    num_samples: int
    num_outputs: int
    config: ProductSettings
    samples: torch.Tensor | None = None
    _roots: torch.Tensor | None = field(default=None, repr=False)

    @property
    def kept(self) -> int:
        """k, the samples the curvature averages over (S without a subset)."""
        return self.num_samples if self.samples is None else self.samples.numel()

    def mask(self, device: torch.device) -> torch.Tensor | None:
        """``(S,)`` with 1 on the curvature subset, 0 elsewhere (``None``: all samples)."""
        if self.samples is None:
            return None
        m = torch.zeros(self.num_samples, dtype=self.config.dtype)
        m[self.samples] = 1
        return m.to(device)

    def sample_rows(self, r0: int, r1: int, per_sample: int) -> torch.Tensor:
        """Factor rows ``r0 … r1 − 1`` (``per_sample`` rows per kept sample) as the indices of the
        samples they belong to."""
        i = torch.arange(r0, r1) // per_sample
        return i if self.samples is None else self.samples[i]

    def loss_hessian_roots(self) -> torch.Tensor:
        """``R_s`` (S, C, C), the PSD square roots of the per-sample loss Hessians."""
        if self._roots is None:
            self._roots = loss_hessian_sqrt(self.losses, self.outputs, self.num_samples,
                                            self.num_outputs, self.config.dtype)
        return self._roots


def hessian_block(block: ParamBlock, grads: Sequence[torch.Tensor],
                  ctx: ProductContext) -> MatrixFreeBlock:
    """The matrix-free exact-Hessian block (``grads``: the block's gradient pieces with graph)."""
    return MatrixFreeBlock(block.name, "hessian",
                           hessian_product(grads, block.params, ctx.config.dtype), block.numel,
                           dtype=ctx.config.dtype, device=block.params[0].device, psd=False)


def fisher_block(block: ParamBlock, ctx: ProductContext, kind: str = "fisher"
                 ) -> MatrixFreeBlock:
    """The matrix-free empirical-Fisher block ``(1/k)·JᵀJ``, ``J = ∂losses/∂θ_b``."""
    losses, s, k, dtype = ctx.losses, ctx.num_samples, ctx.kept, ctx.config.dtype
    n = block.numel
    jac = JacobianProducts(losses, block.params)
    mask = ctx.mask(losses.device)

    def product(v: torch.Tensor) -> torch.Tensor:
        jv = jac.jvp(v)
        if mask is not None:  # J restricted to the curvature subset's rows
            jv = jv * mask.to(jv.dtype)
        return jac.vjp(jv, dtype) / k

    def seeds(r0: int, r1: int) -> torch.Tensor:
        out = torch.zeros((r1 - r0, s), dtype=losses.dtype, device=losses.device)
        out[torch.arange(r1 - r0), ctx.sample_rows(r0, r1, 1).to(losses.device)] = 1
        return out

    def diagonal() -> torch.Tensor:
        return _square_row_sums(losses, block.params, seeds, k, n, ctx.config) / k

    return MatrixFreeBlock(block.name, kind, product, n, dtype=dtype,
                           device=block.params[0].device, psd=True, diagonal=diagonal,
                           rank_bound=k)


def ggn_block(block: ParamBlock, ctx: ProductContext, kind: str = "ggn") -> MatrixFreeBlock:
    """The matrix-free GGN block ``(1/k)·Jᵀ H⁺ J``, ``J = ∂outputs/∂θ_b`` (the exact GGN's
    products, also for the Monte-Carlo GGN, whose expectation it is)."""
    outputs, s, c, dtype = ctx.outputs, ctx.num_samples, ctx.num_outputs, ctx.config.dtype
    k, n = ctx.kept, block.numel
    jac = JacobianProducts(outputs, block.params)
    plus: list[torch.Tensor] = []
    mask = ctx.mask(outputs.device)

    def product(v: torch.Tensor) -> torch.Tensor:
        if not plus:
            roots = ctx.loss_hessian_roots()
            sq = roots @ roots  # H⁺_s = R_s², what the dense GGN's factor squares to
            plus.append(sq if mask is None else sq * mask.view(s, 1, 1))
        jv = jac.jvp(v).reshape(s, c).to(dtype)
        hjv = torch.einsum("sij,sj->si", plus[0], jv)
        return jac.vjp(hjv.reshape(outputs.shape), dtype) / k

    def seeds(r0: int, r1: int) -> torch.Tensor:
        # factor row i·C + j is J_sᵀ R_s[:, j] for the i-th kept sample s: seed R_s[:, j] at
        # output row s (as in the GGN)
        roots = ctx.loss_hessian_roots()
        r = torch.arange(r0, r1, device=outputs.device)
        smp = ctx.sample_rows(r0, r1, c).to(outputs.device)
        out = torch.zeros((r1 - r0, s, c), dtype=outputs.dtype, device=outputs.device)
        out[r - r0, smp, :] = roots[smp, :, r % c].to(outputs.dtype)
        return out.reshape(r1 - r0, *outputs.shape)

    def diagonal() -> torch.Tensor:
        return _square_row_sums(outputs, block.params, seeds, k * c, n, ctx.config) / k

    return MatrixFreeBlock(block.name, kind, product, n, dtype=dtype,
                           device=block.params[0].device, psd=True, diagonal=diagonal,
                           rank_bound=k * c)
