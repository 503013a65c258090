"""``qnewton train / compare / sweep / report / reproduce``: training runs and experiments.

Every setting of a run is a flag whose choices come from the registries; the defaults shown by
``--help`` are :class:`~qnewton.training.TrainConfig`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from qnewton.cli.errors import CLIError
from qnewton.conditioning import REG_SCHEMES
from qnewton.curvature import CURVATURES, GROUPINGS
from qnewton.estimation import KAPPA_METHODS
from qnewton.quantum import HARDWARE_PROFILES, QLSA_MODELS
from qnewton.quantum.backends import QLSA_BACKENDS
from qnewton.scheduling import POLICIES
from qnewton.solvers import SOLVERS
from qnewton.stepping import DAMPING_MAX, DAMPING_MIN, STEP_RULES
from qnewton.tasks import TASKS
from qnewton.training import OPTIMIZERS, TrainConfig
from qnewton.training.optimizers import CURVATURE_DTYPES, PAPER_MODE_LR
from qnewton.validation import check_choice, check_nonnegative

DEFAULTS = TrainConfig()


def _names(registry) -> str:
    return ", ".join(registry)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of a training run (shared by train, compare and sweep)."""
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
    p.add_argument("--curvature", default=d.curvature, help=f"one of {_names(CURVATURES)}")
    p.add_argument("--grouping", default=d.grouping,
                   help=f"parameter blocks: {_names(GROUPINGS)} (module: weight and bias of a "
                   "layer together)")
    p.add_argument("--step-rule", default=d.step_rule,
                   help=f"one of {', '.join(STEP_RULES)}: adaptive = Levenberg-Marquardt damping "
                   "and a step size from the whole model's quadratic model (docs/method.md §4.12); "
                   "fixed = the paper's θ ← θ + lr·Δ with fixed --reg and --clip")
    p.add_argument("--damping", type=float, default=d.damping,
                   help="adaptive rule: initial Levenberg-Marquardt damping λ, added to --reg "
                   f"(in [{DAMPING_MIN:g}, {DAMPING_MAX:g}])")
    p.add_argument("--reg", type=float, default=d.reg,
                   help="regularization strength, >= 0 (max-entry: λ = reg·max|Hij|)")
    p.add_argument("--reg-scheme", default=d.reg_scheme, help=f"one of {_names(REG_SCHEMES)}")
    p.add_argument("--prune-ratio", type=float, default=None,
                   help="symmetric pruning: keep this fraction of each row, in (0, 1] (not "
                   "with --prune-count)")
    p.add_argument("--prune-count", type=int, default=None,
                   help="symmetric pruning: keep this many entries per row (>= 1; not with "
                   "--prune-ratio)")
    p.add_argument("--policy", default=None,
                   help=f"routing policy, one of {_names(POLICIES)} (default: the optimizer's)")
    p.add_argument("--solvers", default=None,
                   help=f"comma-separated classical solvers among {_names(SOLVERS)} "
                   "(default: the optimizer's)")
    p.add_argument("--qlsa", default=d.qlsa, help=f"QLSA query model, one of {_names(QLSA_MODELS)}")
    p.add_argument("--qlsa-backend", default=d.qlsa_backend,
                   help=f"how quantum answers are produced, one of {_names(QLSA_BACKENDS)}")
    p.add_argument("--readout", default=None, help="state or vector (default: the profile's)")
    p.add_argument("--gate-time", type=float, default=None,
                   help="override the profile's gate time, in seconds (> 0)")
    p.add_argument("--eps", type=float, default=d.eps, help="QLSA relative error, in (0, 1)")
    p.add_argument("--kappa-method", default=d.kappa_method,
                   help=f"κ estimator for the decisions, one of {_names(KAPPA_METHODS)}")
    p.add_argument("--kappa-threshold", type=float, default=d.kappa_threshold,
                   help="κ above which the threshold policy routes classically (>= 1)")
    p.add_argument("--alpha", type=float, default=None,
                   help="block-encoding normalization α, > 0 (default: estimated per block)")
    p.add_argument("--shots", type=int, default=None,
                   help="read QLSA answers out with this many shots, >= 1 (default: exact "
                   "amplitudes)")
    p.add_argument("--momentum", type=float, default=d.momentum,
                   help="momentum on Newton steps, in [0, 1)")
    p.add_argument("--clip", type=float, default=d.clip,
                   help="element-wise clip of Newton steps (>= 0; 0 disables; default: none)")
    p.add_argument("--max-block-bytes", type=int, default=d.max_block_bytes,
                   help="memory budget of one curvature block (dense N×N or factor) in bytes "
                   "(>= 1); "
                   "a block over it takes a reported gradient step")
    p.add_argument("--curvature-batch", type=int, default=None,
                   help="build the curvature from a seeded random subset of this many samples "
                   "of each mini-batch (>= 1; the gradient uses all; default: all samples)")
    p.add_argument("--curvature-every", type=int, default=d.curvature_every,
                   help="build the curvature every this many steps and reuse it in between "
                   "with each step's fresh gradient (>= 1; default 1: every step)")
    p.add_argument("--curvature-dtype", choices=tuple(CURVATURE_DTYPES),
                   default=d.curvature_dtype,
                   help="store curvature factors in float64 or in the model's dtype ('model': "
                   "half the memory for a float32 model, but every product casts them back; "
                   "systems are solved in float64 either way; default: %(default)s)")
    p.add_argument("--exact-kappa-max-n", type=int, default=d.exact_kappa_max_n,
                   help="opt-in diagnostics: record the exact κ (eigvalsh) of systems up to "
                   "this N, e.g. 300, for the report's κ plots (>= 0; timed apart from training; "
                   "default 0: never)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_config(args: argparse.Namespace, optimizer: str, hardware: str) -> TrainConfig:
    """The :class:`TrainConfig` of the parsed flags. An invalid setting raises ``ValueError``
    with the library's argument name, which :func:`qnewton.cli.main` reports as the flag."""
    solvers = None
    if args.solvers is not None:
        solvers = tuple(s.strip() for s in args.solvers.split(",") if s.strip())
        if not solvers:
            raise CLIError(f"--solvers needs a comma-separated list among {_names(SOLVERS)}")
    fields = dict(
        task=args.task, optimizer=optimizer, hardware=hardware, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, hidden=args.hidden,
        tiny=args.tiny, max_steps=args.max_steps, curvature=args.curvature,
        grouping=args.grouping, reg=args.reg, reg_scheme=args.reg_scheme,
        prune_ratio=args.prune_ratio, prune_count=args.prune_count, policy=args.policy,
        solvers=solvers, qlsa=args.qlsa, qlsa_backend=args.qlsa_backend, readout=args.readout,
        gate_time=args.gate_time, eps=args.eps, kappa_method=args.kappa_method,
        kappa_threshold=args.kappa_threshold, alpha=args.alpha, shots=args.shots,
        momentum=args.momentum,
        clip=None if args.clip is None or check_nonnegative("clip", args.clip) == 0
        else args.clip, step_rule=args.step_rule, damping=args.damping,
        max_block_bytes=args.max_block_bytes, exact_kappa_max_n=args.exact_kappa_max_n,
        curvature_batch=args.curvature_batch, curvature_every=args.curvature_every,
        curvature_dtype=args.curvature_dtype,
    )
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
