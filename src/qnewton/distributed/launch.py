"""``qnewton train --nproc N``: start N ranks on this machine with torch's own launcher.

The ranks are started by ``torch.distributed.launcher.api.elastic_launch`` — what ``torchrun
--standalone --nproc-per-node N`` runs — as ``python -m qnewton <argv>``, so a launched run is
exactly ``torchrun --standalone --nproc-per-node N -m qnewton <argv>`` (docs/method.md §4.10).
No restarts: a rank that fails stops the run (the others stop at their next collective), and
``--resume`` continues from the last checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from qnewton.distributed.context import PEER_STOPPED_EXIT


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (the launched ranks must not relaunch)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _cause_order(exitcode: int) -> int:
    """0: a root cause (killed by a signal other than SIGTERM, or an error of its own); 1:
    SIGTERM (what the launcher sends the ranks still running once one has failed); 2: stopped
    because another rank had stopped (:data:`PEER_STOPPED_EXIT`)."""
    if exitcode == PEER_STOPPED_EXIT:
        return 2
    if exitcode == -signal.SIGTERM:
        return 1
    return 0


def first_failed_rank(failures: Mapping[int, Any]) -> int:
    """The rank whose failure stopped the run, from the launcher's ``{rank: failure}`` (each
    with ``exitcode`` and ``timestamp``, in the order the launcher saw them): root causes before
    ranks the launcher terminated before ranks that stopped because a peer had; then the
    earliest timestamp (whole seconds), then the order seen. Sorting by rank named rank 0 when
    rank 1 had been killed and rank 0 merely lost its peer."""
    order = {rank: i for i, rank in enumerate(failures)}
    return min(failures, key=lambda r: (_cause_order(int(failures[r].exitcode)),
                                        failures[r].timestamp, order[r]))


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m qnewton <argv>`` on ``nproc`` local ranks; the exit status of the run (0
    when every rank succeeded, else the first failed rank's)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be an integer >= 1, got {nproc!r}")
    # one thread per rank unless the user chose otherwise (torchrun's rule as well)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=str(uuid.uuid4()), rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "qnewton", *strip_nproc(argv))
    except ChildFailedError as exc:
        failures = exc.failures
        rank = first_failed_rank(failures)
        failure = failures[rank]
        how = (f"was killed by signal {-failure.exitcode}" if failure.exitcode < 0
               else f"failed with exit status {failure.exitcode}")
        print(f"qnewton: rank {rank} of {nproc} {how} first (its message, if any, is above); "
              f"{len(failures)} rank(s) stopped in all", file=sys.stderr)
        code = failure.exitcode
        return code if isinstance(code, int) and 0 < code < 256 else 1
    except SignalException as exc:  # Ctrl-C or a kill reached the launcher: the ranks stop too
        print(f"qnewton: the {nproc} ranks were stopped by {exc.sigval.name} (each rank's files "
              "hold its completed steps; --resume continues the run)", file=sys.stderr)
        return 128 + int(exc.sigval)  # 130 for Ctrl-C, as a single process exits
    return 0
