"""The ``full-batch`` bench case (docs/method.md §4.13) on chosen problems at a chosen budget,
e.g. one problem at the full mode's 10 s without running the whole full mode. Prints the case's
table (accuracy at the budget, time to target, measured) and the load average before and after.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python scripts/full_batch_subset.py \\
        --problems least-squares,poisson-2d --budget 10 --rounds 1 [--adam-lrs 1e-3,1e-2] [--json F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings

import torch

from qnewton.bench.full_batch import case_full_batch
from qnewton.bench.full_batch_problems import PROBLEMS
from qnewton.bench.settings import SETTINGS
from qnewton.bench.suite import load_average, pinned_threads, to_jsonable
from qnewton.calibration import calibrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS),
                        help=f"comma-separated, of: {', '.join(PROBLEMS)}")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per run (> 0)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (>= 1)")
    parser.add_argument("--adam-lrs", default="1e-3,3e-3,1e-2", help="Adam's lr grid")
    parser.add_argument("--json", default=None, help="also write the whole entry here")
    args = parser.parse_args(argv)
    problems = tuple(p.strip() for p in args.problems.split(","))
    unknown = [p for p in problems if p not in PROBLEMS]
    if unknown or not problems:
        parser.error(f"--problems must name some of {', '.join(PROBLEMS)}; got {args.problems!r}")
    if not args.budget > 0 or args.rounds < 1:
        parser.error("--budget must be > 0 and --rounds >= 1")
    try:
        lrs = tuple(float(x) for x in args.adam_lrs.split(","))
    except ValueError:
        parser.error(f"--adam-lrs must be comma-separated numbers; got {args.adam_lrs!r}")
    settings = dataclasses.replace(SETTINGS["full"], fb_problems=problems,
                                   fb_budget=args.budget, fb_rounds=args.rounds,
                                   fb_adam_lrs=lrs)
    warnings.simplefilter("ignore")  # the runs keep their warnings in the entry
    with pinned_threads(1):
        before, start = load_average(), time.perf_counter()
        entry = case_full_batch(settings, calibrate(), 0)
        wall = time.perf_counter() - start
    print(f"budget {args.budget:g} s, {args.rounds} round(s), adam lrs {lrs}; torch "
          f"{torch.__version__}, 1 thread; load {before} -> {load_average()}; wall {wall:.0f} s")
    print(entry["table"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(to_jsonable(entry), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
