"""Distributed steps on ``torch.distributed`` (docs/method.md §4.10).

* :mod:`~qnewton.distributed.context` — the process group, collectives with timeouts, and
  :class:`DistributedError`;
* :mod:`~qnewton.distributed.combine` — shards of a batch → the global batch's system;
* :mod:`~qnewton.distributed.factor_shard` — a factor block's shard as sent to its owner
  (Kronecker rows as their factors) and the owner's block over all shards;
* :mod:`~qnewton.distributed.ownership` — which rank solves which block (the
  :class:`WorkAssignment`: local, or LPT across ranks) and which blocks are split
  (:func:`plan_split`);
* :mod:`~qnewton.distributed.comm_rates` — the group's measured collective costs;
* :mod:`~qnewton.distributed.column_shard` — a factor block dealt out by columns and solved by
  all ranks together;
* :mod:`~qnewton.distributed.step` — :class:`StepPath`, the one step path the optimizer calls
  (the identity in a single process);
* :mod:`~qnewton.distributed.sharding` — each rank's slice of a batch, for training loops;
* :mod:`~qnewton.distributed.launch` — ``qnewton train --nproc N`` (torch's elastic launcher).
"""

from qnewton.distributed.column_shard import ColumnShardFactorBlock, split_by_columns
from qnewton.distributed.comm_rates import CommRates, probe_comm_rates
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
    plan_split,
    rank_loads,
)
from qnewton.distributed.run import RunGroup
from qnewton.distributed.sharding import check_shardable, shard_slice
from qnewton.distributed.step import StepPath

__all__ = [
    "ColumnShardFactorBlock", "CommRates", "DistContext", "DistributedError", "LPTAssignment",
    "LocalAssignment", "RunGroup",
    "StepPath", "WorkAssignment", "init_from_environment",
    "launched_world_size", "lpt_assignment", "makespan", "plan_split", "probe_comm_rates",
    "rank_loads", "shard_slice", "split_by_columns",
    "check_shardable",
    "shutdown",
]
