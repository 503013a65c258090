"""``qnewton calibrate [--show | --reset]``: this machine's rates for the classical time models.

The rates decide where every Hessian system is routed, so they can be inspected and re-measured
(docs/method.md §4.5): without a flag the machine is measured now (a probe taken under load is
shown but not cached), ``--show`` prints the cached rates without measuring, ``--reset`` deletes
the cache so that the next run measures again.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from qnewton.calibration import cache_path, calibrate, describe, read_cache, reset_cache
from qnewton.training.machine import set_threads

ACTIONS = ("measure", "show", "reset")


def add_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--show", dest="action", action="store_const", const="show",
                       help="print the cached rates and their provenance; measure nothing")
    group.add_argument("--reset", dest="action", action="store_const", const="reset",
                       help="delete the cached rates (the next run measures again)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads to calibrate for (>= 1; the cache is per thread "
                   "count; default: torch's, as `qnewton train` without --threads)")
    p.set_defaults(action="measure")


def _print(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    path = cache_path()
    if args.action == "reset":
        removed = reset_cache()
        print(f"removed {removed}" if removed else f"no cached rates at {path}")
        return 0
    if args.action == "show":
        cached = read_cache()
        if cached is None:
            print(f"no cached rates for {torch.get_num_threads()} thread(s) at {path}; "
                  "`qnewton calibrate` measures them")
            return 0
        _print(describe(cached))
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # said below, in this command's words
        rates = calibrate(force=True)
    _print(describe(rates))
    if rates.provenance is not None and rates.provenance.under_load:
        print("qnewton calibrate: not cached: the machine was under load during the probe; "
              "run it again when the machine is idle")
    return 0
