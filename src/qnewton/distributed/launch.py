"""``qnewton train --nproc N``: start N ranks on this machine with torch's own launcher.

The ranks are started by ``torch.distributed.launcher.api.elastic_launch`` — what ``torchrun
--standalone --nproc-per-node N`` runs — as ``python -m qnewton <argv>``, so a launched run is
exactly ``torchrun --standalone --nproc-per-node N -m qnewton <argv>`` (docs/method.md §4.10).
No restarts: a rank that fails stops the run (the others stop at their next collective), and
``--resume`` continues from the last checkpoint.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Sequence


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


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m qnewton <argv>`` on ``nproc`` local ranks; the exit status of the run (0
    when every rank succeeded, else the first failed rank's)."""
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
        failures = sorted(exc.failures.items())
        rank, failure = failures[0]
        print(f"qnewton: rank {rank} of {nproc} failed with exit status {failure.exitcode} "
              f"(its message is above); {len(failures)} rank(s) failed in all",
              file=sys.stderr)
        code = failure.exitcode
        return code if isinstance(code, int) and 0 < code < 256 else 1
    return 0
