"""Distributed steps on ``torch.distributed`` (docs/method.md §4.10).

* :mod:`~qnewton.distributed.context` — the process group, collectives with timeouts, and
  :class:`DistributedError`;
* :mod:`~qnewton.distributed.combine` — shards of a batch → the global batch's system;
* :mod:`~qnewton.distributed.ownership` — which rank solves which block (the
  :class:`WorkAssignment`: local, or LPT across ranks);
* :mod:`~qnewton.distributed.step` — :class:`StepPath`, the one step path the optimizer calls
  (the identity in a single process);
* :mod:`~qnewton.distributed.sharding` — each rank's slice of a batch, for training loops;
* :mod:`~qnewton.distributed.launch` — ``qnewton train --nproc N`` (torch's elastic launcher).
"""

from qnewton.distributed.context import (
    DistContext,
    DistributedError,
    init_from_environment,
    launched_world_size,
    shutdown,
)
from qnewton.distributed.ownership import (
    LocalAssignment,
    LPTAssignment,
    WorkAssignment,
    lpt_assignment,
    makespan,
    rank_loads,
)
from qnewton.distributed.run import RunGroup
from qnewton.distributed.sharding import check_shardable, shard_slice
from qnewton.distributed.step import StepPath

__all__ = [
    "DistContext", "DistributedError", "LPTAssignment", "LocalAssignment", "RunGroup",
    "StepPath", "WorkAssignment", "init_from_environment",
    "launched_world_size", "lpt_assignment", "makespan", "rank_loads", "shard_slice",
    "check_shardable",
    "shutdown",
]
