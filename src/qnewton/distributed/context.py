"""The process group a Newton step runs on, and its collectives with timeouts and clear errors.

qnewton runs on ``torch.distributed`` (gloo on CPU, nccl on GPU; docs/method.md §4.10). A
:class:`DistContext` is found from an initialized default process group (``torchrun`` or the
user's own ``init_process_group``) or from a group passed in; a group of one process is no
context at all (the single-process code path runs unchanged).

Every collective goes through :meth:`DistContext.call`, which turns a failure — a peer that died
closes its connections; one that hangs runs into the timeout — into a :class:`DistributedError`
that names this rank, the operation and what to do. A rank never waits forever: tensor
collectives run asynchronously and are waited on with :attr:`DistContext.timeout`, and
:func:`init_from_environment` gives the group the same timeout for the object collectives.
"""

from __future__ import annotations

import datetime
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

#: Seconds a collective may wait for the other ranks (``QNEWTON_DIST_TIMEOUT`` overrides).
DEFAULT_TIMEOUT_S = 300.0
T = TypeVar("T")


#: Exit status of a rank that stopped because another rank had stopped (``qnewton train`` on a
#: :class:`DistributedError`): the launcher then names the rank that stopped first, not this
#: one. 75 is sysexits' EX_TEMPFAIL ("try again later"): the run resumes with --resume.
PEER_STOPPED_EXIT = 75


class DistributedError(RuntimeError):
    """A collective failed or timed out: another rank has stopped (crash, kill, lost host)."""


def timeout_from_environment() -> float:
    """``QNEWTON_DIST_TIMEOUT`` in seconds (> 0), or :data:`DEFAULT_TIMEOUT_S`."""
    raw = os.environ.get("QNEWTON_DIST_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"QNEWTON_DIST_TIMEOUT must be a number of seconds > 0, got {raw!r}")
    return value


def launched_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when not launched by it)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer (set by torchrun), got {raw!r}") from None


def init_from_environment(backend: str | None = None) -> bool:
    """Join the process group that ``torchrun`` described in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) unless one is initialized already or
    ``WORLD_SIZE`` is 1; returns whether this call initialized it (then :func:`shutdown` ends
    it). ``backend`` defaults to nccl when CUDA is available, else gloo."""
    if launched_world_size() <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(
        backend, timeout=datetime.timedelta(seconds=timeout_from_environment()))
    return True


def shutdown() -> None:
    """End the process group (after a run that :func:`init_from_environment` started)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _gist(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0][:300]


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _pickled(obj: Any) -> int:
    try:
        return len(pickle.dumps(obj))
    except Exception:  # noqa: BLE001 (the collective itself reports what cannot be sent)
        return 0


@dataclass
class DistContext:
    """One process group seen from this rank.

    Attributes:
        group: the process group (``None``: the default group).
        rank, world: this rank and the number of ranks in ``group``.
        device: where collective buffers live (the current CUDA device for nccl, else CPU).
        timeout: seconds a tensor collective may wait.
    """

    group: Any
    rank: int
    world: int
    device: torch.device
    timeout: float = DEFAULT_TIMEOUT_S
    #: bytes this rank has sent, by operation (see :meth:`count`)
    sent: dict[str, int] = field(default_factory=dict)
    #: collectives this rank has called, by operation
    calls: dict[str, int] = field(default_factory=dict)
    #: bytes this rank has sent, by the label (``what``) of the collective
    sent_by_label: dict[str, int] = field(default_factory=dict)
    #: collectives this rank has called, by label
    calls_by_label: dict[str, int] = field(default_factory=dict)

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank has sent through its collectives so far (all operations)."""
        return sum(self.sent.values())

    def count(self, op: str, nbytes: float, what: str | None = None) -> None:
        """Book ``nbytes`` sent by this rank in one ``op``. The volumes are those of the
        standard algorithms (what gloo runs for these sizes): a ring all-reduce sends
        2·(R−1)/R of the buffer, a gather or reduce sends the buffer once from every rank but
        the destination, a broadcast sends it R−1 times from the source (flat), an all-gather
        sends it to R−1 peers, an all-to-all sends every piece addressed to another rank;
        object collectives count their pickled size the same way. ``what``: the collective's
        label, booked in :attr:`sent_by_label` / :attr:`calls_by_label` too."""
        self.sent[op] = self.sent.get(op, 0) + int(round(nbytes))
        self.calls[op] = self.calls.get(op, 0) + 1
        if what is not None:
            self.sent_by_label[what] = self.sent_by_label.get(what, 0) + int(round(nbytes))
            self.calls_by_label[what] = self.calls_by_label.get(what, 0) + 1

    @classmethod
    def detect(cls, process_group: Any = None, timeout: float | None = None
               ) -> DistContext | None:
        """The context of ``process_group``, else of the initialized default group; ``None``
        when there is none or it has a single rank."""
        if not dist.is_available() or not dist.is_initialized():
            if process_group is not None:
                raise ValueError("process_group was given but torch.distributed is not "
                                 "initialized (call torch.distributed.init_process_group first)")
            return None
        world = dist.get_world_size(process_group)
        if world <= 1:
            return None
        backend = str(dist.get_backend(process_group))
        device = (torch.device("cuda", torch.cuda.current_device()) if backend == "nccl"
                  else torch.device("cpu"))
        return cls(process_group, dist.get_rank(process_group), world, device,
                   timeout_from_environment() if timeout is None else float(timeout))

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes run files and checkpoints; the others only compute."""
        return self.rank == 0

    def global_rank(self, rank: int) -> int:
        """The default-group rank of ``rank`` in :attr:`group` (what ``src``/``dst`` take)."""
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one collective; a failure becomes a :class:`DistributedError` naming the rank."""
        try:
            return fn()
        except DistributedError:
            raise
        except (RuntimeError, ValueError, OSError, EOFError) as exc:
            raise DistributedError(
                f"rank {self.rank} of {self.world}: {what} failed ({_gist(exc)}); another rank "
                "has stopped (crashed, killed or unreachable), so this rank stops too instead "
                "of waiting. Resume the run from its last checkpoint with --resume (any number "
                "of ranks)."
            ) from exc

    def _wait(self, work: Any) -> None:
        if work is not None:
            work.wait(datetime.timedelta(seconds=self.timeout))

    # -- tensor collectives (asynchronous, waited on with the timeout) --------------------------
    def all_reduce(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place (on :attr:`device`); returns it."""
        buf = tensor.to(self.device)
        self.call(what, lambda: self._wait(
            dist.all_reduce(buf, group=self.group, async_op=True)))
        self.count("all_reduce", 2 * (self.world - 1) / self.world * _nbytes(buf), what)
        return buf.to(tensor.device) if buf is not tensor else buf

    def broadcast(self, tensor: torch.Tensor, src: int, what: str) -> torch.Tensor:
        """``tensor`` as rank ``src`` holds it (every rank passes a buffer of the same shape)."""
        buf = tensor.to(self.device).contiguous()
        self.call(what, lambda: self._wait(dist.broadcast(
            buf, self.global_rank(src), group=self.group, async_op=True)))
        self.count("broadcast", (self.world - 1) * _nbytes(buf) if self.rank == src else 0, what)
        return buf.to(tensor.device)

    def gather(self, tensor: torch.Tensor, dst: int, what: str) -> list[torch.Tensor] | None:
        """Every rank's ``tensor`` (same shape on all) on rank ``dst``; ``None`` elsewhere."""
        buf = tensor.to(self.device).contiguous()
        out = [torch.empty_like(buf) for _ in range(self.world)] if self.rank == dst else None
        self.call(what, lambda: self._wait(dist.gather(
            buf, out, dst=self.global_rank(dst), group=self.group, async_op=True)))
        self.count("gather", _nbytes(buf) if self.rank != dst else 0, what)
        return out

    def reduce(self, tensor: torch.Tensor, dst: int, what: str) -> torch.Tensor | None:
        """The sum of every rank's ``tensor`` on rank ``dst``; ``None`` elsewhere."""
        buf = tensor.to(self.device).contiguous().clone()
        self.call(what, lambda: self._wait(dist.reduce(
            buf, self.global_rank(dst), group=self.group, async_op=True)))
        self.count("reduce", _nbytes(buf) if self.rank != dst else 0, what)
        return buf if self.rank == dst else None

    def all_gather(self, tensor: torch.Tensor, what: str) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape on all), by rank."""
        buf = tensor.to(self.device).contiguous()
        out = [torch.empty_like(buf) for _ in range(self.world)]
        self.call(what, lambda: self._wait(dist.all_gather(
            out, buf, group=self.group, async_op=True)))
        self.count("all_gather", (self.world - 1) * _nbytes(buf), what)
        return [t.to(tensor.device) for t in out]

    def all_to_all(self, tensor: torch.Tensor, send_sizes: list[int], recv_sizes: list[int],
                   what: str) -> torch.Tensor:
        """Exchange pieces of a flat ``tensor``: the ``send_sizes[r]`` elements in order go to
        rank ``r``; returns the pieces received, ``recv_sizes[r]`` elements from rank ``r``,
        concatenated in rank order."""
        buf = tensor.to(self.device).contiguous().reshape(-1)
        out = torch.empty(sum(recv_sizes), dtype=buf.dtype, device=self.device)
        self.call(what, lambda: self._wait(dist.all_to_all_single(
            out, buf, list(recv_sizes), list(send_sizes), group=self.group, async_op=True)))
        self.count("all_to_all", buf.element_size() * (sum(send_sizes) - send_sizes[self.rank]),
                   what)
        return out.to(tensor.device)

    def all_gather_ints(self, values: list[int], what: str) -> list[list[int]]:
        """Every rank's list of integers (same length on all), by rank."""
        buf = torch.tensor(values, dtype=torch.int64, device=self.device)
        out = [torch.empty_like(buf) for _ in range(self.world)]
        self.call(what, lambda: self._wait(dist.all_gather(
            out, buf, group=self.group, async_op=True)))
        self.count("all_gather", (self.world - 1) * _nbytes(buf), what)
        return [[int(v) for v in t.cpu()] for t in out]

    # -- object collectives (bounded by the group's timeout) ------------------------------------
    def all_gather_object(self, obj: Any, what: str) -> list[Any]:
        """Every rank's picklable ``obj``, by rank."""
        out: list[Any] = [None] * self.world
        self.call(what, lambda: dist.all_gather_object(out, obj, group=self.group))
        self.count("all_gather_object", (self.world - 1) * _pickled(obj), what)
        return out

    def broadcast_object(self, obj: Any, src: int, what: str) -> Any:
        """Rank ``src``'s picklable ``obj`` on every rank."""
        box = [obj]
        self.call(what, lambda: dist.broadcast_object_list(
            box, src=self.global_rank(src), group=self.group))
        self.count("broadcast_object",
                   (self.world - 1) * _pickled(obj) if self.rank == src else 0, what)
        return box[0]

    def barrier(self, what: str) -> None:
        """Wait for every rank (gloo: a monitored barrier, which names a missing rank)."""
        if str(dist.get_backend(self.group)) == "gloo":
            self.call(what, lambda: dist.monitored_barrier(
                self.group, timeout=datetime.timedelta(seconds=self.timeout)))
        else:
            self.call(what, lambda: self._wait(dist.barrier(self.group, async_op=True)))
