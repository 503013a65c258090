"""Shards of a batch → the system a single process would solve with the global batch.

Rank ``r`` holds ``S_r`` of the ``S = Σ_r S_r`` samples and computes its blocks from its own
closure, with its own mean: gradient ``g_r = (1/S_r)·Σ_{s∈r} ∇ℓ_s``, factor-form curvature
``scale_r·F_rᵀF_r`` (``scale_r = 1/S_r`` for the Fisher and the GGN), dense blocks ``H_r``. The
global objective is the mean over all ``S`` samples, so (docs/method.md §4.10)

* ``g = Σ_r (S_r/S)·g_r`` — one all-reduce of every block's gradient, weighted (carrying the
  curvature traces and every rank's shard table too: :func:`combine_result`);
* factor form: ``A = Σ_r (S_r/S)·scale_r·F_rᵀF_r = (1/S)·[F_0; F_1; …]ᵀ[F_0; F_1; …]`` after
  multiplying rank r's rows by ``√(S_r·scale_r)`` (= 1 for the Fisher and GGN: the rows are
  concatenated unchanged, in rank order — the single process's row order when the shards are
  contiguous slices of the batch). They are gathered to the block's owner only — a linear
  layer's Kronecker rows ``g ⊗ a`` as their factors ``a`` and ``g``, the explicit rows otherwise
  (:mod:`~qnewton.distributed.factor_shard`), all owners' in one all-to-all;
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


def global_mean_loss(ctx: DistContext, losses: torch.Tensor, ledger: Ledger
                     ) -> tuple[torch.Tensor, list[int]]:
    """The mean of the per-sample losses over every rank's shard (the global objective), and
    the shard sizes ``S_r`` by rank: one all-gather of (Σ losses, S_r) per rank, summed in rank
    order on every rank (the same sum on all of them)."""
    with ledger.phase("communication"):
        local = losses.detach().to(torch.float64)
        buf = torch.stack([local.sum(), torch.tensor(float(local.numel()), dtype=torch.float64)])
        pieces = ctx.all_gather(buf, "all-gather of the loss and the shard sizes")
    total = pieces[0].clone()
    for piece in pieces[1:]:
        total += piece
    return (total[0] / total[1]).to(losses.dtype), [int(p[1]) for p in pieces]


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


def curvature_traces(result: CurvatureResult) -> torch.Tensor:
    """Each local block's mean absolute diagonal entry ``tr|H_b,r| / N_b`` (0: no diagonal)."""
    return torch.tensor([
        float(b.diagonal().abs().sum()) / b.n if b is not None and b.has_diagonal else 0.0
        for b in result.blocks], dtype=torch.float64)


def _slotted(values: list[int], rank: int, world: int) -> torch.Tensor:
    """``values`` in rank ``rank``'s slot of ``world`` slots, zeros elsewhere (float64: exact
    for integers below 2**53): summed over the ranks, every rank's values by rank."""
    out = torch.zeros(world, len(values), dtype=torch.float64)
    out[rank] = torch.tensor(values, dtype=torch.float64)
    return out.reshape(-1)


def combine_result(ctx: DistContext, result: CurvatureResult, config: CurvatureConfig,
                   over_budget: str, ledger: Ledger, sizes: list[int] | None = None
                   ) -> tuple[CurvatureResult, GlobalBatch, float]:
    """The step's gradients combined, each block's mode on the global batch, and the global
    curvature scale (:meth:`~qnewton.distributed.step.StepPath.curvature_scale`).

    One all-reduce carries what the ranks exchange here: the gradients weighted by ``S_r/S``
    (``sizes``: ``S_r`` by rank, from :func:`global_mean_loss`; ``None``: all-gathered first),
    every block's trace weighted the same way, and each rank's integers (samples, outputs, and
    per block its factor rows, shard bytes, Gram width and layout) in its own slot. Gradients
    that are not float64 go in an all-reduce of their own (the integers need float64).

    Owned blocks stay local here (:func:`gather_owned` sends them to their owners once the
    owners are known); collective blocks become :func:`collective_block`; blocks over budget
    are reported in ``skipped`` / ``matrix_free`` with the global batch's figures.
    """
    traces = curvature_traces(result)  # local work, booked apart from the communication
    with ledger.phase("communication"):
        if sizes is None:
            sizes = [row[0] for row in ctx.all_gather_ints([result.num_samples],
                                                           "all-gather of the shard sizes")]
        s = sum(sizes)
        weight = sizes[ctx.rank] / s
        ints = [result.num_samples, result.num_outputs or 1,
                *(_local_rows(b) for b in result.blocks),
                *(_local_bytes(b) for b in result.blocks),
                *(_local_columns(b) for b in result.blocks),
                *(_local_layout(b) for b in result.blocks)]
        flat = torch.cat([g.reshape(-1) for g in result.grads]) * weight
        meta = torch.cat([traces * weight, _slotted(ints, ctx.rank, ctx.world)])
        if flat.dtype == torch.float64:
            total = ctx.all_reduce(torch.cat([flat, meta.to(flat.device)]),
                                   "all-reduce of the gradients, traces and shard sizes")
            flat, meta = total[:flat.numel()], total[flat.numel():].cpu()
        else:
            flat = ctx.all_reduce(flat, "all-reduce of the gradients")
            meta = ctx.all_reduce(meta, "all-reduce of the traces and shard sizes")
    count = len(result.blocks)
    traces, slots = meta[:count], meta[count:].reshape(ctx.world, len(ints))
    table = [[int(v) for v in row.round()] for row in slots]
    if [row[0] for row in table] != sizes:
        raise RuntimeError(f"rank {ctx.rank}: the curvature's samples by rank "
                           f"{[row[0] for row in table]} differ from the loss's {sizes}")
    outputs = {row[1] for row in table}
    if len(outputs) != 1:
        raise ValueError(f"the ranks' models have different output sizes {sorted(outputs)}")
    c = outputs.pop()
    scale = float(traces.max()) if count else 0.0  # as one process takes it (NaN propagates)
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
    rows = [row[2:2 + count] for row in table]
    sent = [row[2 + count:2 + 2 * count] for row in table]
    columns = [_agreed([row[2 + 2 * count + i] for row in table],
                       [row[2 + 3 * count + i] for row in table]) for i in range(count)]
    return combined, GlobalBatch(sizes, c, rows, modes, sent, columns), scale


def row_factor(size: int, scale: float) -> float:
    """``√(S_r·scale_r)``: the multiplier that brings rank r's rows to the ``1/S`` scale (1 for
    the Fisher and GGN, whose ``scale_r = 1/S_r``)."""
    value = size * scale
    return 1.0 if math.isclose(value, 1.0, rel_tol=1e-12) else math.sqrt(value)


def gather_owned(ctx: DistContext, blocks: list[CurvatureBlock | None], owner: list[int],
                 batch: GlobalBatch, ledger: Ledger) -> dict[int, CurvatureBlock]:
    """Send every owned block's shards to its owner; returns this rank's combined blocks.

    One all-to-all carries every factor block's shards to their owners (each rank sends each
    owner exactly the shards of the blocks it owns, no padding); one reduce per owner rank
    carries the dense blocks."""
    mine: dict[int, CurvatureBlock] = {}
    with ledger.phase("communication"):
        factors = [[i for i, m in enumerate(batch.modes)
                    if m == "owned" and owner[i] == r and batch.global_rows(i) is not None]
                   for r in range(ctx.world)]
        if any(factors):
            _exchange_factors(ctx, factors, blocks, batch, mine)
        for r in range(ctx.world):
            dense = [i for i, m in enumerate(batch.modes)
                     if m == "owned" and owner[i] == r and batch.global_rows(i) is None]
            if dense:
                _reduce_dense(ctx, r, dense, blocks, batch, mine)
    return mine


def _exchange_factors(ctx: DistContext, factors: list[list[int]],
                      blocks: list[CurvatureBlock | None], batch: GlobalBatch,
                      mine: dict[int, CurvatureBlock]) -> None:
    """One all-to-all of every rank's shards (:func:`~qnewton.distributed.factor_shard.pack`)
    of the factor blocks ``factors[q]`` to their owner q; this rank joins the shards of its
    own blocks. Every rank knows every shard's bytes (``batch.shard_bytes``), so the pieces
    need no padding and no size exchange."""
    if batch.shard_bytes is None:
        raise ValueError("gathering factor blocks needs the shards' sizes "
                         "(GlobalBatch.shard_bytes)")
    device = blocks[next(i for owned in factors for i in owned)].device
    # each rank brings its own rows to the 1/S scale before sending (it knows its scale_r)
    parts = [pack(blocks[i], row_factor(batch.sizes[ctx.rank], blocks[i].scale)).to(device)
             for owned in factors for i in owned]
    sends = [sum(batch.shard_bytes[ctx.rank][i] for i in owned) for owned in factors]
    flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.uint8, device=device)
    if flat.numel() != sum(sends):
        raise RuntimeError(f"rank {ctx.rank}: its factor shards are {flat.numel()} bytes, "
                           f"{sum(sends)} announced")
    own = factors[ctx.rank]
    receives = [sum(batch.shard_bytes[r][i] for i in own) for r in range(ctx.world)]
    got = ctx.all_to_all(flat, sends, receives, "all-to-all of factor shards to their owners")
    if not own:
        return
    got = got.to(device)
    shards: dict[int, list] = {i: [] for i in own}
    pos = 0
    for r in range(ctx.world):
        for i in own:
            size = batch.shard_bytes[r][i]
            shards[i].append(unpack(got[pos:pos + size]))
            pos += size
    for i in own:
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
