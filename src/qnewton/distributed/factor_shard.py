"""A factor block's shard as the bytes one rank sends to the block's owner, and the owner's
block over every rank's shard (docs/method.md §4.10, "Gathering factor blocks").

A shard is self-describing: a header of int64 words, then the numbers.

* explicit rows ``F_r`` (M_r×N): header ``[0, N, M_r, dtype]``, then the rows;
* Kronecker rows (:class:`~qnewton.curvature.structured.StructuredFactorBlock`, a linear
  layer's rows ``g ⊗ a``): header ``[1, N, K, P, S_r, E_r, dtype(E), then per piece I, O,
  dtype(a), dtype(g)]``, then each piece's ``a`` (S_r×I) and ``g`` (S_r×P×O), then the E_r
  dense rows below them — ``S_r·(I + P·O)`` numbers per piece where the explicit rows take
  ``S_r·P·I·O`` (the MLP's 784→64 layer: 848 numbers per sample instead of 50,176).

The sender brings its rows to the global ``1/S`` scale by multiplying ``g`` (and the dense rows)
by its row factor ``√(S_r·scale_r)``, as it would multiply explicit rows. The owner reads every
rank's header: when all shards are Kronecker rows of the same layout (pieces, P, I and O, dtypes)
it concatenates ``a``, ``g`` and the dense rows rank-major into one
:class:`~qnewton.curvature.structured.StructuredFactorBlock` over all S samples; otherwise
(ranks disagree on the representation or the layout) it forms each rank's explicit rows and
builds the :class:`~qnewton.curvature.representation.FactorBlock` the explicit path builds.
Either way ``scale·FᵀF`` is the single process's block: the same rows, the dense rows of every
rank after the Kronecker rows of every rank instead of after each rank's own (a permutation of
the rows, which leaves FᵀF unchanged).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from qnewton.curvature.representation import CurvatureBlock, FactorBlock
from qnewton.curvature.structured import KroneckerRows, StructuredFactor, StructuredFactorBlock

#: dtypes a shard may carry, by the code its header gives them
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
EXPLICIT, KRONECKER = 0, 1
WORD = 8  # bytes of one header word (int64)


def _code(dtype: torch.dtype) -> int:
    if dtype not in DTYPES:
        raise ValueError(f"a factor shard holds one of {DTYPES}, got {dtype}")
    return DTYPES.index(dtype)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _header(block: FactorBlock) -> list[int]:
    if isinstance(block, StructuredFactorBlock):
        f = block.structured
        extra = f.extra
        p = int(f.pieces[0].g.shape[1])
        words = [KRONECKER, block.n, len(f.pieces), p, int(f.pieces[0].a.shape[0]),
                 0 if extra is None else int(extra.shape[0]),
                 _code(f.dtype if extra is None else extra.dtype)]
        for piece in f.pieces:
            words += [int(piece.a.shape[1]), int(piece.g.shape[2]), _code(piece.a.dtype),
                      _code(piece.g.dtype)]
        return words
    return [EXPLICIT, block.n, block.factor_rows, _code(block.factor.dtype)]


def _layout(words: list[int]) -> tuple[int, ...]:
    """What must agree across ranks to join Kronecker shards unformed: N, the pieces, P, the
    dtypes and each piece's I and O (not the rank's samples S_r or dense rows E_r)."""
    return (words[1], words[2], words[3], *words[6:])


def layout_code(block: FactorBlock) -> int:
    """A 31-bit checksum of ``block``'s Kronecker layout (``0``: explicit rows), for the ranks
    to agree on how the owner will join a block (and price it) before sending anything. The
    owner itself compares the layouts exactly (:func:`join`)."""
    words = _header(block)
    if words[0] == EXPLICIT:
        return 0
    return 1 + zlib.crc32(repr(_layout(words)).encode()) % (2**31 - 1)


def shard_bytes(block: FactorBlock) -> int:
    """Bytes :func:`pack` makes of ``block`` (without forming anything)."""
    words = _header(block)
    if words[0] == EXPLICIT:
        return WORD * len(words) + block.factor_rows * block.n * block.factor.element_size()
    f = block.structured
    size = WORD * len(words) + sum(_nbytes(p.a) + _nbytes(p.g) for p in f.pieces)
    return size + (0 if f.extra is None else _nbytes(f.extra))


def gram_columns(block: CurvatureBlock) -> int:
    """The width N' for which forming the block's Gram ``F Fᵀ`` costs ``2·N'·M²`` flops: N for
    explicit rows; ``Σ_k (O_k + ⌈I_k/P²⌉)`` for Kronecker rows (``G Gᵀ``: 2·M²·O, ``A Aᵀ``:
    2·S²·I with M = S·P; structured.py)."""
    if not isinstance(block, StructuredFactorBlock):
        return block.n
    pieces = block.structured.pieces
    p = int(pieces[0].g.shape[1])
    return sum(int(q.g.shape[2]) + -(-int(q.a.shape[1]) // (p * p)) for q in pieces)


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def pack(block: FactorBlock, row_factor: float) -> torch.Tensor:
    """``block``'s shard as a flat uint8 tensor of :func:`shard_bytes` bytes, its rows times
    ``row_factor`` (``√(S_r·scale_r)``)."""
    words = _header(block)
    parts = [torch.tensor(words, dtype=torch.int64, device=block.device).view(torch.uint8)]

    def scaled(t: torch.Tensor) -> torch.Tensor:
        return t if row_factor == 1.0 else t * row_factor

    if words[0] == EXPLICIT:
        parts.append(_as_bytes(scaled(block.factor)))
    else:
        f = block.structured
        for piece in f.pieces:
            parts += [_as_bytes(piece.a), _as_bytes(scaled(piece.g))]
        if f.extra is not None:
            parts.append(_as_bytes(scaled(f.extra)))
    return torch.cat(parts)


@dataclass
class Shard:
    """One rank's shard as the owner reads it: explicit ``rows``, or Kronecker ``pieces``
    (``(a, g)`` each) with dense ``extra`` rows (``None``: none) and their ``layout`` (what must
    agree across ranks for the shards to be joined without forming rows)."""

    rows: torch.Tensor | None = None
    pieces: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    extra: torch.Tensor | None = None
    layout: tuple[int, ...] = ()

    def explicit(self) -> torch.Tensor:
        """The rows ``(M_r, N)`` in the stored dtype (formed from the factors if needed)."""
        if self.rows is not None:
            return self.rows
        factor = StructuredFactor([KroneckerRows(a, g) for a, g in self.pieces], self.extra)
        return factor.dense(factor.dtype)


def unpack(buf: torch.Tensor) -> Shard:
    """The :class:`Shard` that :func:`pack` wrote into ``buf`` (uint8; trailing padding
    ignored)."""
    pos = 0

    def take(count: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        nonlocal pos
        size = count * torch.empty((), dtype=dtype).element_size()
        # cloned: the slice may not be aligned for dtype
        out = buf[pos:pos + size].clone().view(dtype).reshape(shape)
        pos += size
        return out

    head = [int(v) for v in take(4, torch.int64, (4,))]
    if head[0] == EXPLICIT:
        _, n, m, code = head
        return Shard(rows=take(m * n, DTYPES[code], (m, n)))
    if head[0] != KRONECKER:
        raise ValueError(f"not a factor shard (header kind {head[0]})")
    _, n, k, p = head
    s, e, extra_code = (int(v) for v in take(3, torch.int64, (3,)))
    dims = [int(v) for v in take(4 * k, torch.int64, (4 * k,))]
    pieces = []
    for j in range(k):
        i, o, a_code, g_code = dims[4 * j:4 * j + 4]
        a = take(s * i, DTYPES[a_code], (s, i))
        pieces.append((a, take(s * p * o, DTYPES[g_code], (s, p, o))))
    extra = take(e * n, DTYPES[extra_code], (e, n)) if e else None
    return Shard(pieces=pieces, extra=extra,
                 layout=_layout([KRONECKER, n, k, p, s, e, extra_code, *dims]))


def join(name: str, kind: str, shards: list[Shard], scale: float) -> FactorBlock:
    """The owner's block over every rank's shard (rank-major rows), ``scale·FᵀF``."""
    layouts = {shard.layout for shard in shards}
    if all(shard.pieces is not None for shard in shards) and len(layouts) == 1:
        pieces = [KroneckerRows(torch.cat([shard.pieces[j][0] for shard in shards]),
                                torch.cat([shard.pieces[j][1] for shard in shards]))
                  for j in range(len(shards[0].pieces))]
        extras = [shard.extra for shard in shards if shard.extra is not None]
        extra = torch.cat(extras) if extras else None
        return StructuredFactorBlock(name, kind, StructuredFactor(pieces, extra), scale=scale)
    rows = [shard.explicit() for shard in shards]
    dtype = rows[0].dtype
    return FactorBlock(name, kind, torch.cat([r.to(dtype) for r in rows]), scale=scale)
