"""What a collective costs on this process group: a latency and a bandwidth, measured once by a
tiny probe (docs/method.md §4.10, "Split blocks").

The model is the usual α–β one (Hockney 1994): sending ``b`` bytes costs ``α + b/β``. A ring
all-reduce of ``b`` bytes on ``R`` ranks sends ``2·(R−1)/R·b`` bytes per rank; an all-to-all
sends what each rank addresses to the others. The probe times all-reduces of one float64 (α) and
of :data:`PROBE_BYTES` (β from the difference) on the group itself, takes the median of a few
repeats, and rank 0's figures are broadcast so that every rank predicts the same seconds and
takes the same decisions. The result is cached per process and group shape, like the machine
rates.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from qnewton.distributed.context import DistContext

#: Bytes of the probe's large all-reduce: large enough that the bandwidth term dominates the
#: latency on loopback and Ethernet alike, small enough to cost milliseconds.
PROBE_BYTES = 4 * 2**20
PROBE_REPEATS = 5
_CACHE: dict[tuple[str, int], CommRates] = {}


@dataclass(frozen=True)
class CommRates:
    """α–β costs of this group's collectives, measured by :func:`probe_comm_rates`.

    Attributes:
        latency_s: seconds per collective call (α), measured: an all-reduce of 8 bytes.
        bytes_per_s: bytes per second one rank sends (β), measured from a
            :data:`PROBE_BYTES` all-reduce less the latency.
        world: ranks in the group the figures were measured on.
    """

    latency_s: float
    bytes_per_s: float
    world: int

    def send(self, nbytes: float, calls: int = 1) -> float:
        """Seconds for ``calls`` collectives in which the busiest rank sends ``nbytes``."""
        return calls * self.latency_s + nbytes / self.bytes_per_s

    def all_reduce(self, nbytes: float) -> float:
        """Seconds of a ring all-reduce of a ``nbytes`` buffer."""
        share = 2 * (self.world - 1) / self.world
        return self.send(share * nbytes)

    def to_dict(self) -> dict[str, float]:
        return {"latency_s": self.latency_s, "bytes_per_s": self.bytes_per_s,
                "world": self.world}


def _median_seconds(ctx: DistContext, buf: torch.Tensor) -> float:
    times = []
    for _ in range(PROBE_REPEATS):
        start = time.perf_counter()
        ctx.all_reduce(buf.clone(), "all-reduce of the communication probe")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def probe_comm_rates(ctx: DistContext) -> CommRates:
    """The group's :class:`CommRates`, measured once per process and group shape (a collective:
    every rank must call it at the same point); rank 0's measurement on every rank."""
    key = (str(ctx.device.type), ctx.world)
    if key in _CACHE:
        return _CACHE[key]
    small = torch.zeros(1, dtype=torch.float64, device=ctx.device)
    large = torch.zeros(PROBE_BYTES // 8, dtype=torch.float64, device=ctx.device)
    before = dict(ctx.sent)
    for buf in (small, large):  # connect and touch the buffers once, untimed
        ctx.all_reduce(buf.clone(), "all-reduce of the communication probe")
    latency = _median_seconds(ctx, small)
    big = _median_seconds(ctx, large)
    share = 2 * (ctx.world - 1) / ctx.world
    # β from the bandwidth part only; floored so that a noisy probe never gives β ≤ 0
    bandwidth = share * PROBE_BYTES / max(big - latency, 1e-9)
    figures = torch.tensor([latency, bandwidth], dtype=torch.float64)
    figures = ctx.broadcast(figures, 0, "broadcast of the communication probe")
    rates = CommRates(float(figures[0]), float(figures[1]), ctx.world)
    # the probe's traffic is booked apart from the steps' collectives
    probe = sum(ctx.sent.values()) - sum(before.values())
    ctx.sent.clear()
    ctx.sent.update(before)
    ctx.count("probe", probe)
    _CACHE[key] = rates
    return rates
