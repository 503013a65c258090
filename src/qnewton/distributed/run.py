"""A training run's view of its ranks: who writes, which shard of a batch is whose, shared
machine rates, and data-parallel gradients for first-order optimizers (docs/method.md §4.10).

In a single process it is rank 0 of 1: the writer, with the whole batch, and every method is a
no-op, so a training loop reads the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from qnewton.accounting import Ledger
from qnewton.distributed.context import DistContext, init_from_environment, shutdown
from qnewton.distributed.sharding import check_shardable, shard_slice

T = TypeVar("T")


class RunGroup:
    """The ranks of one training run; :meth:`join` under ``torchrun`` (or in a process group
    the caller initialized), a single process otherwise."""

    def __init__(self, ctx: DistContext | None, started: bool = False) -> None:
        self.ctx = ctx
        self._started = started

    @classmethod
    def join(cls) -> RunGroup:
        """Join the group ``torchrun`` described in the environment (if any)."""
        started = init_from_environment()
        return cls(DistContext.detect(), started)

    def close(self) -> None:
        """End the process group if :meth:`join` started it."""
        if self._started:
            shutdown()
            self._started = False

    @property
    def rank(self) -> int:
        return 0 if self.ctx is None else self.ctx.rank

    @property
    def world(self) -> int:
        return 1 if self.ctx is None else self.ctx.world

    @property
    def writer(self) -> bool:
        """Only rank 0 writes run files and checkpoints."""
        return self.rank == 0

    def check_batches(self, batch: int, n_train: int) -> None:
        """Every batch (the last, shorter one of an epoch included) has a sample per rank."""
        if self.ctx is None:
            return
        check_shardable(batch, self.world)
        last = n_train % batch
        if last and last < self.world:
            raise ValueError(
                f"batch_size {batch} leaves a last batch of {last} samples per epoch "
                f"({n_train} training samples), fewer than the {self.world} ranks; choose a "
                "batch size that divides the training set or leaves at least one per rank")

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a batch's sample indices."""
        if self.ctx is None:
            return idx
        return idx[shard_slice(idx.shape[0], self.rank, self.world)]

    def from_writer(self, make: Callable[[], T], what: str) -> T:
        """``make()`` evaluated on rank 0 and sent to every rank (e.g. the machine rates)."""
        if self.ctx is None:
            return make()
        value = make() if self.writer else None
        return self.ctx.broadcast_object(value, 0, what)

    def barrier(self, what: str) -> None:
        if self.ctx is not None:
            self.ctx.barrier(what)

    def average_gradients(self, params: Sequence[torch.Tensor], losses: torch.Tensor,
                          ledger: Ledger) -> torch.Tensor:
        """After ``losses.mean().backward()`` on each shard: every ``p.grad`` becomes the
        global batch's, ``Σ_r (S_r/S)·g_r``; returns the global mean loss."""
        local = losses.detach().to(torch.float64)
        if self.ctx is None:
            return losses.detach().mean()
        with ledger.phase("communication"):
            head = torch.stack([local.sum(), torch.tensor(float(local.numel()),
                                                          dtype=torch.float64)])
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = torch.cat([head] + [g.reshape(-1).to(torch.float64) * local.numel()
                                       for g in grads])
            flat = self.ctx.all_reduce(flat, "all-reduce of the gradients")
            total = flat[1]
            pos = 2
            for p, g in zip(params, grads, strict=True):
                p.grad = (flat[pos:pos + g.numel()] / total).reshape(g.shape).to(g.dtype)
                pos += g.numel()
        return (flat[0] / total).to(losses.dtype)
