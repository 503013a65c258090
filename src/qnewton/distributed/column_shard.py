"""A factor-form block split across the ranks by columns: each rank holds every row of the
global factor for its own slice of the N columns (docs/method.md §4.10, "Split blocks").

The rows of ``F = [F_0; F_1; …]`` (M×N) live where their samples were evaluated. One all-to-all
re-deals them by columns — rank r sends ``F_r[:, c_q]`` to rank q and keeps ``F_r[:, c_r]`` —
so that every rank holds the slab ``F[:, c_r]`` (M × N_r, rows in the single process's order).
Then every operation a solver needs is a sum over column slabs or a concatenation of them:

* ``F v = Σ_r F[:, c_r]·v[c_r]`` — one all-reduce of M numbers;
* ``F Fᵀ = Σ_r F[:, c_r]·F[:, c_r]ᵀ`` — the Woodbury Gram, each rank doing 1/R of its
  ``2·N·M²`` flops, one all-reduce of M² numbers;
* ``Fᵀ u`` and the diagonal — each rank its own N_r entries, one all-gather of N numbers.

Every rank runs the same solve on the same (all-reduced, bit-identical) numbers, so all take the
same decisions and end with the same direction; the algorithm is the single process's, with its
sums reassociated. The data moved is the all-to-all ((R−1)/R of each rank's rows, sent in both
directions at once instead of all to one owner) plus O(M² + N) per solve.
"""

from __future__ import annotations

import torch

from qnewton.curvature.representation import FactorBlock
from qnewton.distributed.context import DistContext
from qnewton.distributed.sharding import shard_slice


def column_ranges(n: int, world: int) -> list[slice]:
    """Rank r's columns of an N-column block: contiguous, sizes differing by at most one."""
    return [shard_slice(n, r, world) for r in range(world)]


class ColumnShardFactorBlock(FactorBlock):
    """``H = scale·FᵀF`` with this rank holding ``F[:, c_rank]`` (all M rows); every method is a
    collective (all ranks call it in the same order, as in a lockstep solve).

    Args:
        ctx: the process group. slab: ``F[:, c_rank]``, shape ``(M, N_rank)``. n: N.
    """

    def __init__(self, ctx: DistContext, name: str, kind: str, slab: torch.Tensor, n: int,
                 scale: float) -> None:
        super().__init__(name, kind, slab, scale=scale)
        self.ctx, self._n = ctx, int(n)
        self.columns = column_ranges(self._n, ctx.world)
        self._local = FactorBlock(name, kind, slab, scale=scale)

    def __repr__(self) -> str:
        return (f"ColumnShardFactorBlock(name={self.name!r}, rows={self.factor_rows}, "
                f"n={self.n}, columns={self.factor.shape[1]} on rank {self.ctx.rank})")

    @property
    def n(self) -> int:
        return self._n

    def _mine(self, v: torch.Tensor) -> torch.Tensor:
        return v[self.columns[self.ctx.rank]]

    def _concat(self, local: torch.Tensor, what: str) -> torch.Tensor:
        """The full N rows of a column-sliced result (``(N_r,)`` or ``(N_r, k)`` per rank)."""
        widest = max(c.stop - c.start for c in self.columns)
        pad = torch.zeros((widest, *local.shape[1:]), dtype=local.dtype, device=local.device)
        pad[:local.shape[0]] = local
        pieces = self.ctx.all_gather(pad, what)
        return torch.cat([p[:c.stop - c.start] for p, c in zip(pieces, self.columns,
                                                                 strict=True)])

    def apply_factor(self, v: torch.Tensor) -> torch.Tensor:
        local = self._local.apply_factor(self._mine(v).to(self.dtype))
        return self.ctx.all_reduce(local, "all-reduce of a split block's F·v")

    def apply_factor_t(self, u: torch.Tensor) -> torch.Tensor:
        return self._concat(self._local.apply_factor_t(u), "all-gather of a split block's Fᵀ·u")

    def _form_gram(self) -> torch.Tensor:
        return self.ctx.all_reduce(self._local.gram(), "all-reduce of a split block's Gram")

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.scale * self.apply_factor_t(self.apply_factor(v))

    def diagonal(self) -> torch.Tensor:
        if self._diagonal is None:
            self._diagonal = self._concat(self._local.diagonal(),
                                          "all-gather of a split block's diagonal")
        return self._diagonal.clone()

    def full_factor(self) -> torch.Tensor:
        """``F`` (M×N) on every rank (an all-gather of the slabs: for small diagnostics)."""
        return self._concat(self.factor.T.contiguous(),
                            "all-gather of a split block's factor").T

    def to_dense(self) -> torch.Tensor:
        full = self.full_factor().to(self.dtype)
        return self.scale * (full.T @ full)


def split_by_columns(ctx: DistContext, block: FactorBlock, rows: list[int], row_factor: float,
                     scale: float) -> ColumnShardFactorBlock:
    """This rank's :class:`ColumnShardFactorBlock` of the global factor (a collective).

    Args:
        block: this rank's factor block ``F_r`` (M_r×N). rows: ``M_q`` by rank.
        row_factor: ``√(S_r·scale_r)``, bringing this rank's rows to the global scale.
        scale: the global block's scale (``1/S``).
    """
    n = block.n
    columns = column_ranges(n, ctx.world)
    local = block.factor if row_factor == 1.0 else block.factor * row_factor
    sends = [local[:, c].reshape(-1) for c in columns]
    width = columns[ctx.rank].stop - columns[ctx.rank].start
    received = ctx.all_to_all(torch.cat(sends), [s.numel() for s in sends],
                              [m * width for m in rows],
                              f"all-to-all of block {block.name!r}'s factor columns")
    slab = received.reshape(sum(rows), width)
    return ColumnShardFactorBlock(ctx, block.name, block.kind, slab, n, scale)
