"""Factors held by their structure: per-sample rows of linear layers as Kronecker products.

A linear layer ``z = x Wᵀ + b`` with one input row per sample gives sample s the weight
gradient ``g_s ⊗ a_s`` (``a_s`` its input, ``g_s`` the gradient flowing into its output; column
``o·I + i`` of the flattened ``W``) and the bias gradient ``g_s`` (Goodfellow 2015, arXiv
1510.01799). A factor made of such rows need not be formed: with ``A`` ``(S, I)`` and ``G``
``(S, P, O)`` (P rows per sample: one for the Fisher, C for the GGN),

* ``F v`` is ``Σ_o G[s, j, o]·(A Vᵀ)[s, o]`` with ``V`` the ``(O, I)`` reshape of ``v``:
  ``S·I·O + S·P·O`` flops instead of ``S·P·I·O``, and no ``S·P × I·O`` array read from memory;
* ``Fᵀ u`` is ``(Σ_j u[s, j]·G[s, j])ᵀ A``, as cheap;
* the Gram ``F Fᵀ`` is ``(G Gᵀ) ⊙ (A Aᵀ)`` (entrywise, ``A Aᵀ`` repeated over the P rows of a
  sample): ``M²·(O + I)`` flops instead of ``M²·I·O``;
* the diagonal of ``FᵀF`` is ``(Σ_j G²)ᵀ (A²)``.

Storage is ``S·(I + P·O)`` numbers instead of ``S·P·I·O`` — what several ranks exchange for a
split block (docs/method.md §4.7, "Kronecker rows"). :class:`StructuredFactor` puts such column
pieces side by side (a block's weight and bias, or several layers of a module block) and may
append dense rows below (the curvature of terms that bypass the outputs, an L2 penalty's root).
:class:`StructuredFactorBlock` is the :class:`~qnewton.curvature.representation.FactorBlock`
over it; anything that needs the explicit rows (:attr:`~StructuredFactorBlock.factor`) gets them
formed once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qnewton.curvature.memory import DEFAULT_CHUNK_BYTES, element_size
from qnewton.curvature.representation import FactorBlock, FactorCosts, arithmetic_dtype

#: A structured factor of at most this many entries (1 MiB in float64) also keeps its explicit
#: rows, in float64, for its products: one matrix product each instead of two small ones per
#: column piece, whose fixed costs dominate at this size (measured, one thread: the
#: 321-parameter least-squares MLP of the ``full-batch`` bench, 256 rows, 15.6 → 9.5 ms per
#: step). The structure still serves what it saves most on: storage and the ranks' exchange.
EXPLICIT_MAX_ELEMENTS = 1 << 17


class KroneckerRows:
    """Columns of a factor whose row ``s·P + j`` is ``G[s, j] ⊗ A[s]``.

    Args:
        a: ``(S, I)`` the per-sample right factor (a layer's input; a column of ones for a
            bias).
        g: ``(S, P, O)`` the left factor (the gradient flowing into the layer's output, one
            ``(S, O)`` slice per backward seed).
    """

    def __init__(self, a: torch.Tensor, g: torch.Tensor) -> None:
        if a.ndim != 2 or g.ndim != 3 or a.shape[0] != g.shape[0]:
            raise ValueError(f"need a (S, I) and g (S, P, O) with the same S; got "
                             f"{tuple(a.shape)} and {tuple(g.shape)}")
        self.a, self.g = a, g

    @property
    def rows(self) -> int:
        return int(self.g.shape[0] * self.g.shape[1])

    @property
    def width(self) -> int:
        return int(self.g.shape[2] * self.a.shape[1])

    def _pair(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a.to(dtype), self.g.to(dtype)

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """``F v`` for ``v`` ``(width, k)`` → ``(rows, k)``."""
        a, g = self._pair(v.dtype)
        s, p, o = g.shape
        av = torch.einsum("si,oik->sok", a, v.reshape(o, a.shape[1], -1))
        return torch.einsum("spo,sok->spk", g, av).reshape(s * p, -1)

    def _apply_pieces(self, mat: torch.Tensor) -> torch.Tensor:
        """The structured rows' part of ``F v``, ``(M₁, k)``."""
        return sum(piece.apply(part) for piece, part in
                   zip(self.pieces, mat.split(self.widths), strict=True))

    def apply_t(self, u: torch.Tensor) -> torch.Tensor:
        """``Fᵀ u`` for ``u`` ``(rows, k)`` → ``(width, k)``."""
        a, g = self._pair(u.dtype)
        s, p, o = g.shape
        gu = torch.einsum("spo,spk->sok", g, u.reshape(s, p, -1))
        return torch.einsum("sok,si->oik", gu, a).reshape(o * a.shape[1], -1)

    def gram(self, dtype: torch.dtype) -> torch.Tensor:
        """``F Fᵀ`` ``(rows, rows)``."""
        a, g = self._pair(dtype)
        s, p, o = g.shape
        flat = g.reshape(s * p, o)
        # A Aᵀ broadcast over each sample's P rows, never repeated in memory (measured: 2 ms
        # instead of 17 ms per piece at S = 128, P = 10)
        gram = (flat @ flat.T).view(s, p, s, p)
        gram.mul_((a @ a.T)[:, None, :, None])
        return gram.view(s * p, s * p)

    def square_sums(self, dtype: torch.dtype) -> torch.Tensor:
        """The column sums of ``F ∘ F`` (the diagonal of ``FᵀF``), ``(width,)``."""
        a, g = self._pair(dtype)
        return (g.square().sum(dim=1).T @ a.square()).reshape(-1)

    def cross(self, other: KroneckerRows, dtype: torch.dtype) -> torch.Tensor:
        """``F_selfᵀ F_other`` ``(width, other.width)``: ``Σ_s (Σ_j g_s,j h_s,jᵀ) ⊗ (a_s b_sᵀ)``
        as one ``(O·Q) × S × (I·K)`` product per chunk of samples (``S·N²`` flops where the
        explicit rows take ``S·P·N²``)."""
        a, g = self._pair(dtype)
        b, h = other._pair(dtype)
        (s, _, o), q = g.shape, h.shape[2]
        i, k = a.shape[1], b.shape[1]
        out = torch.zeros((o * q, i * k), dtype=dtype, device=a.device)
        step = max(1, DEFAULT_CHUNK_BYTES // max(1, (i * k + o * q) * element_size(dtype)))
        for r0 in range(0, s, step):
            r1 = min(s, r0 + step)
            outputs = torch.einsum("sjo,sjq->soq", g[r0:r1], h[r0:r1]).reshape(r1 - r0, -1)
            inputs = torch.einsum("si,sk->sik", a[r0:r1], b[r0:r1]).reshape(r1 - r0, -1)
            out += outputs.T @ inputs
        return out.reshape(o, q, i, k).permute(0, 2, 1, 3).reshape(o * i, q * k)

    def take(self, rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The explicit rows ``rows`` (indices into ``0 … rows−1``), ``(len(rows), width)``."""
        a, g = self._pair(dtype)
        p = g.shape[1]
        samples, seeds = rows // p, rows % p
        return torch.einsum("ro,ri->roi", g[samples, seeds], a[samples]).reshape(len(rows), -1)

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        """All the explicit rows, ``(rows, width)``."""
        a, g = self._pair(dtype)
        s, p, o = g.shape
        return (g.unsqueeze(3) * a[:, None, None, :]).reshape(s * p, o * a.shape[1])

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.a, self.g

    def costs(self, others: Sequence[KroneckerRows]) -> FactorCosts:
        """Flops of :meth:`apply`, :meth:`gram` and the :meth:`cross` products with ``others``
        (the normal matrix's row of blocks)."""
        (s, p, o), i = self.g.shape, self.a.shape[1]
        m = s * p
        normal = sum(2.0 * s * o * q.g.shape[2] * i * q.a.shape[1] for q in others)
        return FactorCosts(product=2.0 * s * (i * o + p * o),
                           gram=2.0 * m * m * o + 2.0 * s * s * i + m * m, normal=normal)


class StructuredFactor:
    """``F`` ``(M, N)``: column pieces side by side (each :class:`KroneckerRows` over the same
    ``M₁`` rows), then ``extra`` dense rows ``(M − M₁, N)`` below, or none."""

    def __init__(self, pieces: Sequence[KroneckerRows], extra: torch.Tensor | None = None
                 ) -> None:
        if not pieces:
            raise ValueError("a structured factor needs at least one column piece")
        if len({piece.rows for piece in pieces}) != 1:
            raise ValueError("the column pieces of a structured factor must have equal rows")
        self.pieces = list(pieces)
        self.widths = [piece.width for piece in self.pieces]
        if extra is not None and (extra.ndim != 2 or extra.shape[1] != sum(self.widths)):
            raise ValueError(f"extra rows must be (k, {sum(self.widths)}); got "
                             f"{tuple(extra.shape)}")
        self.extra = extra

    @property
    def structured_rows(self) -> int:
        return self.pieces[0].rows

    @property
    def shape(self) -> tuple[int, int]:
        extra = 0 if self.extra is None else int(self.extra.shape[0])
        return self.structured_rows + extra, sum(self.widths)

    @property
    def dtype(self) -> torch.dtype:
        return self.pieces[0].g.dtype

    @property
    def device(self) -> torch.device:
        return self.pieces[0].g.device

    @property
    def stored_elements(self) -> int:
        """Numbers held: ``Σ S·(I + P·O)`` over the pieces, plus the extra rows."""
        held = {id(t): t.numel() for piece in self.pieces for t in piece.tensors()}
        return sum(held.values()) + (0 if self.extra is None else self.extra.numel())

    def costs(self) -> FactorCosts:
        """Flops of ``F v``, ``F Fᵀ`` and ``FᵀF`` done as :meth:`apply`, :meth:`gram` and
        :meth:`normal_matrix` do them."""
        total = FactorCosts(0.0, 0.0, 0.0, 0)
        for piece in self.pieces:
            total = total + piece.costs(self.pieces)
        if self.extra is not None:
            (m, n), e = self.shape, self.extra.shape[0]
            total = total + FactorCosts(product=2.0 * e * n, gram=2.0 * m * e * n,
                                        normal=2.0 * e * n * n)
        return total

    def with_rows(self, extra: torch.Tensor) -> StructuredFactor:
        """This factor with ``extra`` ``(k, N)`` dense rows appended below (after any already
        there)."""
        rows = extra if self.extra is None else torch.cat([self.extra, extra.to(self.extra)])
        return StructuredFactor(self.pieces, rows)

    def apply(self, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``F v`` in ``dtype`` (``v``: ``(N,)`` or ``(N, k)``)."""
        mat = v.to(dtype).reshape(v.shape[0], -1)
        out = self._apply_pieces(mat)
        if self.extra is not None:
            out = torch.cat([out, self.extra.to(dtype) @ mat])
        return out if v.ndim == 2 else out.squeeze(1)

    def _apply_pieces(self, mat: torch.Tensor) -> torch.Tensor:
        """The structured rows' part of ``F v``, ``(M₁, k)``."""
        return sum(piece.apply(part) for piece, part in
                   zip(self.pieces, mat.split(self.widths), strict=True))

    def apply_t(self, u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``Fᵀ u`` in ``dtype`` (``u``: ``(M,)`` or ``(M, k)``)."""
        mat = u.to(dtype).reshape(u.shape[0], -1)
        m1 = self.structured_rows
        out = torch.cat([piece.apply_t(mat[:m1]) for piece in self.pieces])
        if self.extra is not None:
            out = out + self.extra.to(dtype).T @ mat[m1:]
        return out if u.ndim == 2 else out.squeeze(1)

    def gram(self, dtype: torch.dtype) -> torch.Tensor:
        """``F Fᵀ`` ``(M, M)`` in ``dtype``."""
        top = self.pieces[0].gram(dtype)
        for piece in self.pieces[1:]:
            top += piece.gram(dtype)
        if self.extra is None:
            return top
        extra = self.extra.to(dtype)
        cross = self._apply_pieces(extra.T)  # F₁ Eᵀ, (M₁, k)
        return torch.cat([torch.cat([top, cross], dim=1),
                          torch.cat([cross.T, extra @ extra.T], dim=1)])

    def square_sums(self, dtype: torch.dtype) -> torch.Tensor:
        """The diagonal of ``FᵀF``, ``(N,)``."""
        out = torch.cat([piece.square_sums(dtype) for piece in self.pieces])
        if self.extra is not None:
            out = out + self.extra.to(dtype).square().sum(dim=0)
        return out

    def normal_matrix(self, dtype: torch.dtype) -> torch.Tensor:
        """``FᵀF`` ``(N, N)`` from the pieces' :meth:`KroneckerRows.cross` (and ``EᵀE``)."""
        rows = [torch.cat([p.cross(q, dtype) for q in self.pieces], dim=1) for p in self.pieces]
        out = torch.cat(rows)
        if self.extra is not None:
            extra = self.extra.to(dtype)
            out = out + extra.T @ extra
        return out

    def take(self, rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The explicit rows ``rows`` (indices), ``(len(rows), N)``."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        m1 = self.structured_rows
        top = rows < m1
        out = torch.empty((len(rows), self.shape[1]), dtype=dtype, device=self.device)
        if bool(top.any()):
            out[top] = torch.cat([piece.take(rows[top], dtype) for piece in self.pieces], dim=1)
        if not bool(top.all()):
            out[~top] = self.extra.to(dtype)[rows[~top] - m1]
        return out

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        """The explicit ``(M, N)`` factor."""
        top = torch.cat([piece.dense(dtype) for piece in self.pieces], dim=1)
        return top if self.extra is None else torch.cat([top, self.extra.to(dtype)])


class StructuredFactorBlock(FactorBlock):
    """``H = scale · Fᵀ F`` with ``F`` a :class:`StructuredFactor`: products, the Gram matrix and
    the diagonal from the structure; :attr:`factor` (the explicit rows in the stored dtype, for
    what needs them: sharding the rows among ranks) is formed on first use and kept."""

    representation = "kronecker-rows"

    def __init__(self, name: str, kind: str, factor: StructuredFactor,
                 scale: float = 1.0) -> None:
        if not isinstance(factor, StructuredFactor):
            raise ValueError(f"factor must be a StructuredFactor, got {type(factor).__name__}")
        self._start(name, kind, scale)
        self.structured = factor
        self._explicit: torch.Tensor | None = None
        rows, width = factor.shape
        #: whether the products use the explicit rows (:data:`EXPLICIT_MAX_ELEMENTS`)
        self.explicit_products = rows * width <= EXPLICIT_MAX_ELEMENTS
        self._rows64: torch.Tensor | None = None

    @property
    def costs(self) -> FactorCosts | None:  # type: ignore[override]
        """What the solvers' time models price (:class:`FactorCosts`); ``None`` (explicit rows'
        prices) when the products use the kept rows of a small factor."""
        return None if self.explicit_products else self.structured.costs()

    @property
    def _small(self) -> torch.Tensor | None:
        """The float64 rows a small factor multiplies with (formed at first use), else None."""
        if self.explicit_products and self._rows64 is None:
            self._rows64 = self.structured.dense(self.dtype)
        return self._rows64

    @property
    def factor(self) -> torch.Tensor:  # type: ignore[override]
        if self._explicit is None and self.explicit_products and \
                self.dtype == self.structured.dtype:
            self._explicit = self._small
        if self._explicit is None:
            # in the stored dtype, as explicit rows would be stored; the block's own arithmetic
            # uses the exact float64 products of the stored factors instead
            self._explicit = self.structured.dense(self.structured.dtype)
        return self._explicit

    @property
    def n(self) -> int:
        return self.structured.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return arithmetic_dtype(self.structured.dtype)

    @property
    def storage_dtype(self) -> torch.dtype:
        return self.structured.dtype

    @property
    def device(self) -> torch.device:
        return self.structured.device

    @property
    def factor_rows(self) -> int:
        return self.structured.shape[0]

    @property
    def _wide(self) -> bool:
        return True

    def apply_factor(self, v: torch.Tensor) -> torch.Tensor:
        if (rows := self._small) is not None:
            return rows @ v
        return self.structured.apply(v, self.dtype)

    def apply_factor_t(self, u: torch.Tensor) -> torch.Tensor:
        if (rows := self._small) is not None:
            return rows.T @ u
        return self.structured.apply_t(u, self.dtype)

    def _form_gram(self) -> torch.Tensor:
        if (rows := self._small) is not None:
            return rows @ rows.T
        return self.structured.gram(self.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.scale * self.apply_factor_t(self.apply_factor(v))

    def diagonal(self) -> torch.Tensor:
        if self._diagonal is None:
            self._diagonal = self.scale * self.structured.square_sums(self.dtype)
        return self._diagonal.clone()

    def _form_dense(self) -> torch.Tensor:
        if (rows := self._small) is not None:
            return self.scale * (rows.T @ rows)
        return self.scale * self.structured.normal_matrix(self.dtype)


def factor_block(name: str, kind: str, factor: torch.Tensor | StructuredFactor,
                 scale: float = 1.0) -> FactorBlock:
    """The factor block over ``factor``: explicit rows or a :class:`StructuredFactor`."""
    if isinstance(factor, StructuredFactor):
        return StructuredFactorBlock(name, kind, factor, scale)
    return FactorBlock(name, kind, factor, scale)


def append_rows(factor: torch.Tensor | StructuredFactor, extra: torch.Tensor
                ) -> torch.Tensor | StructuredFactor:
    """``factor`` with the dense rows ``extra`` ``(k, N)`` appended below."""
    if isinstance(factor, StructuredFactor):
        return factor.with_rows(extra)
    return torch.cat([factor, extra.to(factor)])


def explicit_rows(factor: torch.Tensor | StructuredFactor, rows: torch.Tensor,
                  dtype: torch.dtype) -> torch.Tensor:
    """Rows ``rows`` of ``factor`` as an explicit ``(len(rows), N)`` tensor in ``dtype``."""
    if isinstance(factor, StructuredFactor):
        return factor.take(rows, dtype)
    return factor[rows].to(dtype)


def weighted_row_sum(factor: torch.Tensor | StructuredFactor, w: torch.Tensor
                     ) -> torch.Tensor:
    """``wᵀ F`` ``(N,)`` for weights ``w`` ``(M,)``, in ``w``'s dtype."""
    if isinstance(factor, StructuredFactor):
        return factor.apply_t(w, w.dtype)
    return w.to(factor.device, factor.dtype) @ factor
