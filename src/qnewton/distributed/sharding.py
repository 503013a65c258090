"""Each rank's share of a global batch (docs/method.md §4.10).

Shards are contiguous slices in rank order, sizes differing by at most one, so the combined
factor rows of N ranks come in the order one process would build them, and any number of ranks
sees the same global batch.
"""

from __future__ import annotations


def shard_slice(total: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s slice of a batch of ``total`` items split over ``world`` ranks (the first
    ``total mod world`` ranks take one more). A rank may get an empty slice when
    ``total < world``; :func:`check_shardable` refuses that up front."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank}, world {world}")
    base, extra = divmod(total, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def check_shardable(batch_size: int, world: int) -> None:
    """Every rank needs at least one sample of every batch."""
    if batch_size < world:
        raise ValueError(f"batch_size must be at least the number of ranks ({world}) so that "
                         f"every rank gets a sample; got {batch_size}")
