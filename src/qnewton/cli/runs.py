"""``qnewton train / compare / sweep / report / reproduce``: training runs and experiments.

Every setting of a run is a flag whose choices come from the registries; the defaults shown by
``--help`` are :class:`~qnewton.training.TrainConfig`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from qnewton.cli.errors import CLIError, as_flag_message
from qnewton.options import Option
from qnewton.quantum import HARDWARE_PROFILES
from qnewton.tasks import TASKS
from qnewton.training import OPTIMIZERS, TrainConfig
from qnewton.training.config import RUN_FIELDS, RUN_OPTIONS
from qnewton.training.machine import THREADS_HELP, set_threads
from qnewton.training.optimizers import PAPER_MODE_LR
from qnewton.validation import check_choice

DEFAULTS = TrainConfig()


def _names(registry) -> str:
    return ", ".join(registry)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of a training run (shared by train, compare and sweep): the run's own, then one
    per method option of :data:`qnewton.options.OPTIONS`, with its help text."""
    d = DEFAULTS
    batch = ", ".join(f"{name} {spec.default_batch_size}" for name, spec in TASKS.items())
    multiples = "".join(f"; {name}: a multiple of {spec.hidden_multiple_of}"
                        for name, spec in TASKS.items() if spec.hidden_multiple_of > 1)
    p.add_argument("--task", default=d.task, help=f"one of {_names(TASKS)}")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="passes over the training set (>= 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="mini-batch size, from 1 to the size of the training set (default: the "
                   f"task's: {batch})")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (> 0; default: the optimizer's: " + ", ".join(
                       f"{n} {s.default_lr:g}" for n, s in OPTIMIZERS.items())
                   + f"; Newton family with --step-rule fixed: {PAPER_MODE_LR:g})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed for data split, init and QLSA, in [0, 2**32 - 1]")
    p.add_argument("--hidden", type=int, default=None,
                   help=f"hidden size (>= 1{multiples}; default: per task)")
    p.add_argument("--tiny", action="store_true", help="tiny data and model (smoke tests)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps (>= 1; default: all epochs)")
    p.add_argument("--gate-time", type=float, default=None,
                   help="override the profile's gate time, in seconds (> 0)")
    for option in RUN_OPTIONS:
        if option.field == "hardware":
            continue  # each command declares --hardware itself (compare takes several)
        default = option.train_default
        shown = "" if default is None else f" (default: {default})"
        p.add_argument(option.flag, dest=option.field, type=_parser(option), default=default,
                       help=option.help + shown)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parser(option: Option):
    """The flag's argparse type: the option's parser, its error named by the flag."""
    def parse(text: str):
        try:
            return option.parse(text)
        except ValueError as exc:
            flags = {option.field: option.flag, option.name: option.flag}
            raise argparse.ArgumentTypeError(as_flag_message(str(exc), flags)) from None

    parse.__name__ = option.field
    return parse


def train_config(args: argparse.Namespace, optimizer: str, hardware: str) -> TrainConfig:
    """The :class:`TrainConfig` of the parsed flags. An invalid setting raises ``ValueError``
    with the library's argument name, which :func:`qnewton.cli.main` reports as the flag."""
    fields = {name: getattr(args, name) for name, _, _ in RUN_FIELDS
              if name not in ("optimizer", "eval_every", "checkpoint_every")
              and hasattr(args, name)}
    fields.update({o.field: getattr(args, o.field) for o in RUN_OPTIONS})
    fields.update(optimizer=optimizer, hardware=hardware)
    return TrainConfig(**fields)


def _split_list(name: str, text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CLIError(f"--{name} needs a comma-separated list, got {text!r}")
    return items


def _launch_ranks(args: argparse.Namespace, config: TrainConfig) -> int | None:
    """``--nproc N > 1``: start N local ranks (torch's launcher) and return the run's exit
    status; ``None`` when this process should train itself (docs/method.md §4.10)."""
    from qnewton.distributed import launched_world_size

    if args.nproc == 1:
        return None
    if launched_world_size() > 1:
        raise CLIError("--nproc starts the ranks itself; under torchrun (WORLD_SIZE="
                       f"{launched_world_size()}) leave it out")
    from qnewton.distributed.launch import launch
    from qnewton.training.run_dir import check_run_dir, run_dir_path

    if config.batch < args.nproc:
        raise CLIError(f"--batch-size must be at least the number of ranks ({args.nproc}) so "
                       f"that every rank gets a sample; got {config.batch}")
    check_run_dir(run_dir_path(args.out), args.resume)  # before any process starts
    return launch(args.nproc, args.raw_argv)


def run_train(args: argparse.Namespace) -> int:
    from qnewton.training import train

    if isinstance(args.nproc, bool) or args.nproc < 1:
        raise CLIError(f"--nproc must be an integer >= 1 (processes on this machine; 1: no "
                       f"launcher), got {args.nproc}")
    config = train_config(args, args.optimizer, args.hardware)
    set_threads(args.threads)
    launched = _launch_ranks(args, config)
    if launched is not None:
        return launched
    summary = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    keys = ("task", "optimizer", "hardware", "hardware_label", "steps",
            f"test_{summary['metric']}", "test_loss", "measured_seconds",
            "modeled_quantum_seconds", "total_seconds", "quantum_solves", "classical_solves",
            "gradient_fallbacks")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    print(f"run written to {args.out}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from qnewton.experiments import compare, format_table

    optimizers = _split_list("optimizers", args.optimizers)
    groups = args.hardware or [DEFAULTS.hardware]
    hardware = [h for group in groups for h in _split_list("hardware", group)]
    for name in optimizers:  # before train_config, whose message would name --optimizer
        check_choice("optimizers", name, OPTIMIZERS)
    config = train_config(args, optimizers[0], hardware[0])
    result = compare(config, optimizers, hardware, args.out,
                     target_accuracy=args.target_accuracy, repeats=args.repeats,
                     progress=not args.no_progress)
    print(format_table(result["rows"], result["metric"]))
    print(f"comparison written to {args.out}/comparison.json")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from qnewton.experiments import find_crossovers, format_table, sweep

    try:
        values = [float(v) for v in _split_list("values", args.values)]
    except ValueError:
        raise CLIError(f"--values must be comma-separated numbers, got {args.values!r}") from None
    config = train_config(args, args.optimizer, args.hardware)
    result = sweep(config, args.param, values, args.out, progress=not args.no_progress)
    print(format_table(result["rows"], result["metric"], key="label"))
    base = result["baseline"]
    if base is not None:
        print(f"baseline {base['label']}: total {base['total_seconds']:.4g} s (measured)")
        if args.param == "gate-time":
            rows = sorted(result["rows"], key=lambda r: r["value"])
            cross = find_crossovers([r["value"] for r in rows],
                                    [r["total_seconds"] for r in rows], base["total_seconds"])
            print("gate-time crossover: " + (
                "none in the swept range" if not cross else
                "total time equals the baseline at gate time "
                + ", ".join(f"{c:.3g} s" for c in cross) + " (log-log interpolation)"))
    print(f"sweep written to {args.out}/sweep.json")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Write the report; integrity warnings go to stderr, the last line says how many."""
    from qnewton.reports import make_report

    written = make_report(args.directory)
    for warning in written.warnings:
        print(f"qnewton report: warning: {warning}", file=sys.stderr)
    print(written.message())
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    from qnewton.experiments import claims_markdown, reproduce

    result = reproduce(args.out, quick=args.quick, progress=not args.no_progress)
    print(claims_markdown(result["claims"]))
    print(f"claims written to {args.out}/claims.json and claims.md")
    return 0


def add_commands(sub: argparse._SubParsersAction, formatter) -> None:
    """The train, compare, sweep, report and reproduce subcommands."""
    from qnewton.experiments import SWEEP_PARAMS

    tr = sub.add_parser("train", help="train one task with one optimizer into --out DIR",
                        formatter_class=formatter)
    add_training_arguments(tr)
    tr.add_argument("--optimizer", default=DEFAULTS.optimizer, help=f"one of {_names(OPTIMIZERS)}")
    tr.add_argument("--hardware", default=DEFAULTS.hardware,
                    help=f"one of {_names(HARDWARE_PROFILES)}")
    tr.add_argument("--out", required=True,
                    help="run directory, created if missing (must not hold another run)")
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out from its checkpoint (same settings; any "
                    "number of ranks)")
    tr.add_argument("--nproc", type=int, default=1,
                    help="ranks on this machine (>= 1): > 1 starts them with torch's launcher, "
                    "like torchrun --standalone --nproc-per-node N -m qnewton train ...; each "
                    "rank takes a shard of every batch, rank 0 writes the run")
    tr.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    tr.set_defaults(func=run_train, raw_argv=None)

    cp = sub.add_parser("compare", help="run several optimizers and tabulate",
                        formatter_class=formatter)
    add_training_arguments(cp)
    cp.add_argument("--optimizers", required=True,
                    help=f"comma-separated, among {_names(OPTIMIZERS)}")
    cp.add_argument("--hardware", action="append", default=None,
                    help="profile(s) for the Newton family (repeat or comma-separate; "
                    "default: paper)")
    cp.add_argument("--target-accuracy", type=float, default=None,
                    help="report the time to reach this test metric")
    cp.add_argument("--repeats", type=int, default=1,
                    help="run everything this many times, interleaved; the table shows medians "
                    "and min-max (>= 1)")
    cp.add_argument("--out", required=True, help="comparison directory")
    cp.set_defaults(func=run_compare, hardware=None)

    sw = sub.add_parser("sweep", help="the paper's ablations over one setting",
                        formatter_class=formatter)
    add_training_arguments(sw)
    sw.add_argument("--optimizer", default=DEFAULTS.optimizer, help=f"one of {_names(OPTIMIZERS)}")
    sw.add_argument("--hardware", default=DEFAULTS.hardware, help="hardware profile")
    sw.add_argument("--param", required=True, choices=list(SWEEP_PARAMS),
                    help="the setting to sweep")
    sw.add_argument("--values", required=True, help="comma-separated values of --param")
    sw.add_argument("--out", required=True, help="sweep directory")
    sw.set_defaults(func=run_sweep)

    rp = sub.add_parser("report", help="plots and report.html for a run/compare/sweep dir")
    rp.add_argument("directory", help="a train, compare or sweep output directory")
    rp.set_defaults(func=run_report)

    rr = sub.add_parser("reproduce", help="run the experiments behind the paper's claims",
                        formatter_class=formatter)
    rr.add_argument("--quick", action="store_true", help="short runs (minutes)")
    rr.add_argument("--out", default="runs/reproduce", help="output directory")
    rr.add_argument("--no-progress", action="store_true", help="no progress bar")
    rr.set_defaults(func=run_reproduce)


__all__ = ["add_commands", "add_training_arguments", "train_config"]
