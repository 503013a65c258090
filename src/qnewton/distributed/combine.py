"""Shards of a batch → the system a single process would solve with the global batch.

Rank ``r`` holds ``S_r`` of the ``S = Σ_r S_r`` samples and computes its blocks from its own
closure, with its own mean: gradient ``g_r = (1/S_r)·Σ_{s∈r} ∇ℓ_s``, factor-form curvature
``scale_r·F_rᵀF_r`` (``scale_r = 1/S_r`` for the Fisher and the GGN), dense blocks ``H_r``. The
global objective is the mean over all ``S`` samples, so (docs/method.md §4.10)

* ``g = Σ_r (S_r/S)·g_r`` — one all-reduce of every block's gradient, weighted;
* factor form: ``A = Σ_r (S_r/S)·scale_r·F_rᵀF_r = (1/S)·[F_0; F_1; …]ᵀ[F_0; F_1; …]`` after
  multiplying rank r's rows by ``√(S_r·scale_r)`` (= 1 for the Fisher and GGN: the rows are
  concatenated unchanged, in rank order — the single process's row order when the shards are
  contiguous slices of the batch). They are gathered to the block's owner only — a linear
  layer's Kronecker rows ``g ⊗ a`` as their factors ``a`` and ``g``, the explicit rows otherwise
  (:mod:`~qnewton.distributed.factor_shard`);
* dense blocks (the exact Hessian): ``H = Σ_r (S_r/S)·H_r``, reduced to the owner;
* matrix-free blocks: ``H v = Σ_r (S_r/S)·H_r v`` — every product is an all-reduce, so such a
  block is solved by all ranks together, in lockstep (:func:`collective_block`).

The memory budget is decided on the *global* batch: a block whose combined factor would exceed
``max_block_bytes`` becomes matrix-free (or is skipped) exactly where one process would do so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from qnewton.accounting import Ledger
from qnewton.curvature import CURVATURES, CurvatureConfig, CurvatureResult, format_bytes
from qnewton.curvature.representation import (
    CurvatureBlock,
    DenseBlock,
    FactorBlock,
    MatrixFreeBlock,
)
from qnewton.distributed.context import DistContext
from qnewton.distributed.factor_shard import (
    gram_columns,
    join,
    layout_code,
    pack,
    shard_bytes,
    unpack,
)

#: How each block of a combined step is solved: by one ``owned`` rank (factor or dense form),
#: by all ranks together (``collective``: matrix-free; ``split``: a factor block dealt out by
#: columns, decided at assignment), or by every rank alike without a system (``none``: skipped
#: over budget; the gradient fallback needs no communication).
MODES = ("owned", "collective", "split", "none")


@dataclass
class GlobalBatch:
    """Sample counts of one step's shards.

    Attributes:
        sizes: ``S_r`` by rank. outputs: C (1 when the kind has no outputs).
        rows: per rank, per block, the local factor rows (``-1``: not in factor form).
        modes: per block, one of :data:`MODES`.
        shard_bytes: per rank, per block, the bytes of the rank's factor shard as sent to an
            owner (:func:`~qnewton.distributed.factor_shard.shard_bytes`; ``-1``: not in factor
            form); ``None``: 8 bytes per explicit row entry.
        gram_columns: per block, :func:`~qnewton.distributed.factor_shard.gram_columns` when
            every rank holds Kronecker rows of the same layout (the owner then joins them
            unformed), else ``-1`` (N: explicit rows); ``None``: N for every block.
    """

    sizes: list[int]
    outputs: int
    rows: list[list[int]]
    modes: list[str]
    shard_bytes: list[list[int]] | None = None
    gram_columns: list[int] | None = None

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def weight(self, rank: int) -> float:
        """``S_r / S``: rank r's share of the mean."""
        return self.sizes[rank] / self.total

    @classmethod
    def local(cls, result: CurvatureResult) -> GlobalBatch:
        """One process's batch: every block with a system is owned (``none``: no system)."""
        rows = [_local_rows(b) for b in result.blocks]
        return cls([result.num_samples], result.num_outputs or 1, [rows],
                   ["owned" if b is not None else "none" for b in result.blocks],
                   [[_local_bytes(b) for b in result.blocks]],
                   [_agreed([_local_columns(b)], [_local_layout(b)]) for b in result.blocks])

    def global_rows(self, index: int) -> int | None:
        """Rows of block ``index``'s combined factor (``None``: not in factor form)."""
        rows = [r[index] for r in self.rows]
        return None if min(rows) < 0 else sum(rows)

    def kronecker(self, index: int, n: int) -> bool:
        """Whether block ``index`` (N = ``n``) is held as Kronecker rows on every rank (its Gram
        and gather are then priced from the factors)."""
        return self.gram_columns is not None and 0 <= self.gram_columns[index] < n


def global_mean_loss(ctx: DistContext, losses: torch.Tensor, ledger: Ledger) -> torch.Tensor:
    """The mean of the per-sample losses over every rank's shard (the global objective)."""
    with ledger.phase("communication"):
        local = losses.detach().to(torch.float64)
        buf = torch.stack([local.sum(), torch.tensor(float(local.numel()), dtype=torch.float64)])
        total = ctx.all_reduce(buf, "all-reduce of the loss")
    return (total[0] / total[1]).to(losses.dtype)


def _local_rows(block: CurvatureBlock | None) -> int:
    rows = None if block is None else block.factor_rows
    return -1 if rows is None else rows


def _factor_form(block: CurvatureBlock | None) -> bool:
    return isinstance(block, FactorBlock) and block.factor_rows is not None


def _local_bytes(block: CurvatureBlock | None) -> int:
    return shard_bytes(block) if _factor_form(block) else -1


def _local_columns(block: CurvatureBlock | None) -> int:
    return gram_columns(block) if _factor_form(block) and layout_code(block) else -1


def _local_layout(block: CurvatureBlock | None) -> int:
    return layout_code(block) if _factor_form(block) else 0


def _agreed(columns: list[int], layouts: list[int]) -> int:
    """A block's Gram width when every rank holds Kronecker rows of one layout, else ``-1``."""
    return columns[0] if len(set(layouts)) == 1 and layouts[0] else -1


def _mode(block: CurvatureBlock | None, config: CurvatureConfig, over_budget: str,
          s: int, c: int) -> tuple[str, str | None]:
    """The block's mode on the global batch, and why it is over budget (else ``None``)."""
    if block is None:
        return "none", None
    kind = CURVATURES[config.kind]
    needed = kind.block_bytes(block.n, s, c, config.dtype)
    over = block.matrix_free or needed > config.max_block_bytes
    if not over:
        return "owned", None
    reason = (f"block {block.name!r} needs {format_bytes(needed)} with the global batch of {s} "
              f"samples, over the {format_bytes(config.max_block_bytes)} budget "
              f"(max_block_bytes); {kind.budget_advice(s, c)}")
    if over_budget == "matrix-free" and kind.has_matrix_free:
        return "collective", reason
    return "none", reason


def collective_block(ctx: DistContext, local: CurvatureBlock, weight: float,
                     rank_bound: int | None) -> MatrixFreeBlock:
    """The global block as products only: ``v ↦ Σ_r w_r·H_r v`` (one all-reduce per product).

    Every rank must make the same sequence of products, which it does when all ranks run the
    same solve on the same (combined) inputs."""
    def product(v: torch.Tensor) -> torch.Tensor:
        return ctx.all_reduce(weight * local.matvec(v), "all-reduce of a curvature product")

    diagonal = None
    if local.has_diagonal:
        def diagonal() -> torch.Tensor:
            return ctx.all_reduce(weight * local.diagonal(), "all-reduce of a diagonal")

    return MatrixFreeBlock(local.name, local.kind, product, local.n, dtype=local.dtype,
                           device=local.device, psd=local.psd, diagonal=diagonal,
                           rank_bound=rank_bound)


def combine_result(ctx: DistContext, result: CurvatureResult, config: CurvatureConfig,
                   over_budget: str, ledger: Ledger) -> tuple[CurvatureResult, GlobalBatch]:
    """The step's gradients combined, and each block's mode on the global batch.

    Owned blocks stay local here (:func:`gather_owned` sends them to their owners once the
    owners are known); collective blocks become :func:`collective_block`; blocks over budget
    are reported in ``skipped`` / ``matrix_free`` with the global batch's figures.
    """
    with ledger.phase("communication"):
        ints = [result.num_samples, result.num_outputs or 1,
                *(_local_rows(b) for b in result.blocks),
                *(_local_bytes(b) for b in result.blocks),
                *(_local_columns(b) for b in result.blocks),
                *(_local_layout(b) for b in result.blocks)]
        table = ctx.all_gather_ints(ints, "all-gather of the shard sizes")
        sizes = [row[0] for row in table]
        outputs = {row[1] for row in table}
        if len(outputs) != 1:
            raise ValueError(f"the ranks' models have different output sizes {sorted(outputs)}")
        c = outputs.pop()
        s = sum(sizes)
        weight = sizes[ctx.rank] / s
        flat = torch.cat([g.reshape(-1) for g in result.grads]) * weight
        flat = ctx.all_reduce(flat, "all-reduce of the gradients")
    grads = list(flat.split([g.numel() for g in result.grads]))
    grads = [g.reshape(old.shape) for g, old in zip(grads, result.grads, strict=True)]
    blocks: list[CurvatureBlock | None] = []
    modes: list[str] = []
    skipped: dict[str, str] = {}
    matrix_free: dict[str, str] = {}
    for i, block in enumerate(result.blocks):
        mode, reason = _mode(block, config, over_budget, s, c)
        if mode == "collective":
            rows = [row[2 + i] for row in table]
            bound = getattr(block, "rank_bound", None)
            bound = sum(rows) if min(rows) >= 0 else (None if bound is None else s * c)
            block = collective_block(ctx, block, weight, bound)
            matrix_free[block.name] = reason
        elif mode == "none":
            name = result.blocks[i].name if result.blocks[i] is not None else None
            if reason is not None and name is not None:
                skipped[name] = reason
            block = None
        blocks.append(block)
        modes.append(mode)
    skipped.update({k: v for k, v in result.skipped.items() if k not in skipped})
    combined = replace(result, blocks=blocks, grads=grads, skipped=skipped,
                       matrix_free=matrix_free, num_samples=s,
                       num_outputs=result.num_outputs and c)
    count = len(result.blocks)
    rows = [row[2:2 + count] for row in table]
    sent = [row[2 + count:2 + 2 * count] for row in table]
    columns = [_agreed([row[2 + 2 * count + i] for row in table],
                       [row[2 + 3 * count + i] for row in table]) for i in range(count)]
    return combined, GlobalBatch(sizes, c, rows, modes, sent, columns)


def row_factor(size: int, scale: float) -> float:
    """``√(S_r·scale_r)``: the multiplier that brings rank r's rows to the ``1/S`` scale (1 for
    the Fisher and GGN, whose ``scale_r = 1/S_r``)."""
    value = size * scale
    return 1.0 if math.isclose(value, 1.0, rel_tol=1e-12) else math.sqrt(value)


def gather_owned(ctx: DistContext, blocks: list[CurvatureBlock | None], owner: list[int],
                 batch: GlobalBatch, ledger: Ledger) -> dict[int, CurvatureBlock]:
    """Send every owned block's shards to its owner; returns this rank's combined blocks.

    One gather (factor rows, padded to the longest shard) and one reduce (dense blocks) per
    owner rank, each carrying all of that owner's blocks."""
    mine: dict[int, CurvatureBlock] = {}
    with ledger.phase("communication"):
        for r in range(ctx.world):
            factors = [i for i, m in enumerate(batch.modes)
                       if m == "owned" and owner[i] == r and batch.global_rows(i) is not None]
            dense = [i for i, m in enumerate(batch.modes)
                     if m == "owned" and owner[i] == r and batch.global_rows(i) is None]
            if factors:
                _gather_factors(ctx, r, factors, blocks, batch, mine)
            if dense:
                _reduce_dense(ctx, r, dense, blocks, batch, mine)
    return mine


def _gather_factors(ctx: DistContext, dst: int, indices: list[int],
                    blocks: list[CurvatureBlock | None], batch: GlobalBatch,
                    mine: dict[int, CurvatureBlock]) -> None:
    """One gather to ``dst`` of every rank's shards of the blocks ``indices``
    (:func:`~qnewton.distributed.factor_shard.pack`, padded to the longest rank's bytes); the
    owner joins them into its blocks."""
    if batch.shard_bytes is None:
        raise ValueError("gathering factor blocks needs the shards' sizes "
                         "(GlobalBatch.shard_bytes)")
    lengths = [sum(batch.shard_bytes[r][i] for i in indices) for r in range(ctx.world)]
    device = blocks[indices[0]].device
    flat = torch.zeros(max(lengths), dtype=torch.uint8, device=device)
    # each rank brings its own rows to the 1/S scale before sending (it knows its scale_r)
    parts = [pack(blocks[i], row_factor(batch.sizes[ctx.rank], blocks[i].scale))
             for i in indices]
    mine_bytes = torch.cat(parts)
    if mine_bytes.numel() != lengths[ctx.rank]:
        raise RuntimeError(f"rank {ctx.rank}: its factor shards are {mine_bytes.numel()} bytes, "
                           f"{lengths[ctx.rank]} announced")
    flat[:lengths[ctx.rank]] = mine_bytes.to(device)
    gathered = ctx.gather(flat, dst, f"gather of factor shards to rank {dst}")
    if gathered is None:
        return
    shards: dict[int, list] = {i: [] for i in indices}
    for r, buf in enumerate(gathered):
        buf = buf.to(device)
        pos = 0
        for i in indices:
            size = batch.shard_bytes[r][i]
            shards[i].append(unpack(buf[pos:pos + size]))
            pos += size
    for i in indices:
        b = blocks[i]
        mine[i] = join(b.name, b.kind, shards[i], 1.0 / batch.total)


def _reduce_dense(ctx: DistContext, dst: int, indices: list[int],
                  blocks: list[CurvatureBlock | None], batch: GlobalBatch,
                  mine: dict[int, CurvatureBlock]) -> None:
    weight = batch.weight(ctx.rank)
    flat = torch.cat([blocks[i].to_dense().reshape(-1) * weight for i in indices])
    total = ctx.reduce(flat, dst, f"reduce of dense blocks to rank {dst}")
    if total is None:
        return
    pos = 0
    for i in indices:
        b = blocks[i]
        matrix = total[pos:pos + b.n * b.n].reshape(b.n, b.n).to(b.device)
        pos += b.n * b.n
        mine[i] = DenseBlock(b.name, b.kind, matrix, psd=b.psd)
