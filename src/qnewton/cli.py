"""Command-line interface: ``qnewton <command>`` (also ``python -m qnewton``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from qnewton.costs import (
    ATTOSECOND,
    HARDWARE_PROFILES,
    QLSA_MODELS,
    best_classical,
    calibrate,
    classical_costs,
    get_profile,
    quantum_cost,
)

READOUTS = ("state", "vector")


class CLIError(ValueError):
    """A command-line argument is invalid; the message names it and what is allowed."""


def _positive_int(name: str, value: float) -> int:
    if value != int(value) or value < 1:
        raise CLIError(f"--{name} must be a positive integer, got {value:g}")
    return int(value)


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise CLIError(f"--{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def estimate_report(args: argparse.Namespace) -> dict[str, Any]:
    """The ``estimate`` command's result as a dict (validates every argument first)."""
    n = _positive_int("n", args.n)
    d = _positive_int("d", args.d)
    if d > n:
        raise CLIError(f"--d must be <= --n (a row has at most N nonzeros); got d={d}, n={n}")
    if not args.kappa >= 1:
        raise CLIError(f"--kappa must be >= 1 (a condition number), got {args.kappa:g}")
    if not 0 < args.eps < 1:
        raise CLIError(f"--eps must be in (0, 1), got {args.eps:g}")
    if not args.alpha > 0:
        raise CLIError(f"--alpha must be > 0, got {args.alpha:g}")
    qlsa = _choice("qlsa", args.qlsa, sorted(QLSA_MODELS))
    hardware = _choice("hardware", args.hardware, sorted(HARDWARE_PROFILES))
    readout = None if args.readout is None else _choice("readout", args.readout, READOUTS)
    overrides: dict[str, Any] = {}
    if args.gate_time is not None:
        if not args.gate_time > 0:
            raise CLIError(f"--gate-time must be > 0 seconds, got {args.gate_time:g}")
        overrides["gate_time_s"] = args.gate_time
    profile = get_profile(hardware, **overrides)
    quantum = quantum_cost(
        n, d, args.kappa, args.eps, alpha=args.alpha, qlsa=qlsa, profile=profile, readout=readout
    )
    rates = calibrate()
    classical = classical_costs(n, nnz=n * d, kappa=args.kappa, eps=args.eps, rates=rates)
    solver, classical_best = best_classical(classical)
    return {
        "n": n,
        "d": d,
        "kappa": args.kappa,
        "eps": args.eps,
        "alpha": args.alpha,
        "qlsa": qlsa,
        "hardware": hardware,
        "gate_time_s": profile.gate_time_s,
        "readout": quantum.readout,
        "queries": quantum.queries,
        "quantum_seconds": quantum.total_seconds,
        "quantum_seconds_kind": f"modeled ({hardware} profile)",
        "quantum": quantum.to_dict(),
        "classical_seconds": classical,
        "classical_seconds_kind": f"modeled (cost model, rates {rates.source} on {rates.host})",
        "best_classical": solver,
        "choice": "quantum" if quantum.total_seconds < classical_best else "classical",
        "speedup_quantum_over_classical": classical_best / quantum.total_seconds
        if quantum.total_seconds > 0
        else float("inf"),
    }


def _print_estimate(report: dict[str, Any]) -> None:
    q = report["quantum"]
    print(f"Linear system: N={report['n']}, d={report['d']}, kappa={report['kappa']:g}, "
          f"eps={report['eps']:g}, alpha={report['alpha']:g}")
    print(f"QLSA {report['qlsa']}: {report['queries']:.4g} queries")
    print(f"Quantum, {report['quantum_seconds_kind']}, readout={report['readout']}: "
          f"{report['quantum_seconds']:.4g} s")
    detail = {k: q[k] for k in ("seconds_per_query", "runs", "loading_seconds") if k in q}
    print("  " + ", ".join(f"{k}={v:.4g}" for k, v in detail.items()))
    print(f"Classical, {report['classical_seconds_kind']}:")
    for name, seconds in sorted(report["classical_seconds"].items(), key=lambda kv: kv[1]):
        print(f"  {name:<9} {seconds:.4g} s")
    print(f"Choice: {report['choice']} (best classical: {report['best_classical']}; "
          f"classical/quantum time ratio {report['speedup_quantum_over_classical']:.3g})")


def _cmd_estimate(args: argparse.Namespace) -> int:
    report = estimate_report(args)
    if args.json:
        print(json.dumps(report))
    else:
        _print_estimate(report)
    return 0


def _train_config(args: argparse.Namespace, optimizer: str, hardware: str) -> Any:
    from qnewton.training import TrainConfig

    fields = dict(
        task=args.task,
        optimizer=optimizer,
        hardware=hardware,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        hidden=args.hidden,
        tiny=args.tiny,
        max_steps=args.max_steps,
        curvature=args.curvature,
        reg=args.reg,
        reg_scheme=args.reg_scheme,
        prune_ratio=args.prune_ratio,
        qlsa=args.qlsa,
        readout=args.readout,
        gate_time=args.gate_time,
        eps=args.eps,
        momentum=args.momentum,
        clip=args.clip if args.clip else None,
    )
    try:
        return TrainConfig(**fields)
    except ValueError as exc:
        # TrainConfig names its fields; the flags use dashes.
        raise CLIError(str(exc).replace("batch_size", "--batch-size")) from None


def _cmd_train(args: argparse.Namespace) -> int:
    from qnewton.training import train

    config = _train_config(args, args.optimizer, args.hardware)
    summary = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    keys = ("task", "optimizer", "hardware", "steps", f"test_{summary['metric']}", "test_loss",
            "measured_seconds", "modeled_quantum_seconds", "total_seconds", "quantum_solves",
            "classical_solves", "gradient_fallbacks")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    print(f"run written to {args.out}")
    return 0


def _split_list(name: str, text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CLIError(f"--{name} needs a comma-separated list, got {text!r}")
    return items


def _cmd_compare(args: argparse.Namespace) -> int:
    from qnewton.experiments import compare, format_table

    optimizers = _split_list("optimizers", args.optimizers)
    groups = args.hardware or ["paper"]
    hardware = [h for group in groups for h in _split_list("hardware", group)]
    config = _train_config(args, optimizers[0], hardware[0])
    result = compare(config, optimizers, hardware, args.out, target=args.target_accuracy,
                     progress=not args.no_progress)
    print(format_table(result["rows"], result["metric"]))
    print(f"comparison written to {args.out}/comparison.json")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from qnewton.experiments import crossover, format_table, sweep

    try:
        values = [float(v) for v in _split_list("values", args.values)]
    except ValueError:
        raise CLIError(f"--values must be comma-separated numbers, got {args.values!r}") from None
    config = _train_config(args, args.optimizer, args.hardware)
    result = sweep(config, args.param, values, args.out, progress=not args.no_progress)
    print(format_table(result["rows"], result["metric"], key="label"))
    base = result["baseline"]
    if base is not None:
        print(f"baseline {base['label']}: total {base['total_seconds']:.4g} s (measured)")
        if args.param == "gate-time":
            cross = crossover(result["rows"], base["total_seconds"])
            print("gate-time crossover: " + ("none in the swept range" if cross is None
                                             else f"quantum pays off at gate time <= {cross:g} s"))
    print(f"sweep written to {args.out}/sweep.json")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from qnewton.reports import write_report

    path = write_report(args.directory)
    print(f"report written to {path}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from qnewton.experiments import claims_markdown, reproduce

    result = reproduce(args.out, quick=args.quick, progress=not args.no_progress)
    print(claims_markdown(result["claims"]))
    print(f"claims written to {args.out}/claims.json and claims.md")
    return 0


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    from qnewton.tasks import TASKS

    p.add_argument("--task", default="digits", help=f"one of {', '.join(TASKS)}")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set (>= 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="mini-batch size (>= 1; default: digits/mnist 128, text 32, lm 16)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (> 0; default: per optimizer)")
    p.add_argument("--seed", type=int, default=0, help="seed for data split, init and QLSA error")
    p.add_argument("--hidden", type=int, default=None, help="hidden size (default: per task)")
    p.add_argument("--tiny", action="store_true", help="tiny data and model (smoke tests)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--curvature", default="fisher", help="fisher, ggn or hessian")
    p.add_argument("--reg", type=float, default=5e-3,
                   help="regularization strength (max-entry: λ = reg·max|Hij|)")
    p.add_argument("--reg-scheme", default="max-entry",
                   help="max-entry (paper), absolute, spectral or none")
    p.add_argument("--prune-ratio", type=float, default=None,
                   help="symmetric pruning: keep this fraction of each row (0, 1]")
    p.add_argument("--qlsa", default="jennings", help=f"one of {', '.join(sorted(QLSA_MODELS))}")
    p.add_argument("--readout", default=None, help="state or vector (default: the profile's)")
    p.add_argument("--gate-time", type=float, default=None, help="override gate time (s)")
    p.add_argument("--eps", type=float, default=1e-2, help="QLSA relative error in (0, 1)")
    p.add_argument("--momentum", type=float, default=0.0, help="momentum on Newton steps")
    p.add_argument("--clip", type=float, default=0.1,
                   help="element-wise clip of Newton steps (> 0; 0 disables)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qnewton",
        description="Newton's-method training with hybrid quantum-classical scheduling.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser(
        "estimate",
        help="modeled quantum vs predicted classical time for one linear system",
        description="For one N×N system with d nonzeros per row and condition number kappa, "
        "print the QLSA query count, the modeled quantum seconds on a hardware profile, each "
        "classical solver's predicted seconds on this machine, and the cheaper choice.",
    )
    est.add_argument("--n", type=float, required=True, help="system size N (positive integer)")
    est.add_argument("--d", type=float, required=True, help="nonzeros per row, 1 <= d <= N")
    est.add_argument("--kappa", type=float, required=True, help="condition number, >= 1")
    est.add_argument("--eps", type=float, default=1e-2, help="QLSA relative error, in (0, 1)")
    est.add_argument("--alpha", type=float, default=1.0,
                     help="block-encoding normalization alpha (> 0, default 1)")
    est.add_argument("--qlsa", default="jennings", help=f"one of {', '.join(sorted(QLSA_MODELS))}")
    est.add_argument("--hardware", default="paper",
                     help=f"one of {', '.join(sorted(HARDWARE_PROFILES))}")
    est.add_argument("--gate-time", type=float, default=None,
                     help=f"override the gate time in seconds (paper's attosecond: {ATTOSECOND:g})")
    est.add_argument("--readout", default=None,
                     help="state (free, as in the paper) or vector (tomography of x); "
                     "default: the profile's")
    est.add_argument("--json", action="store_true", help="print one JSON object")
    est.set_defaults(func=_cmd_estimate)

    from qnewton.training import OPTIMIZERS

    tr = sub.add_parser("train", help="train one task with one optimizer into --out DIR")
    _add_training_arguments(tr)
    tr.add_argument("--optimizer", default="qnewton", help=f"one of {', '.join(OPTIMIZERS)}")
    tr.add_argument("--hardware", default="paper",
                    help=f"one of {', '.join(sorted(HARDWARE_PROFILES))}")
    tr.add_argument("--out", required=True, help="run directory (must not hold another run)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.set_defaults(func=_cmd_train)

    cp = sub.add_parser("compare", help="run several optimizers and tabulate")
    _add_training_arguments(cp)
    cp.add_argument("--optimizers", required=True,
                    help=f"comma-separated, among {', '.join(OPTIMIZERS)}")
    cp.add_argument("--hardware", action="append", default=None,
                    help="profile(s) for the Newton family (repeat or comma-separate)")
    cp.add_argument("--target-accuracy", type=float, default=None,
                    help="report the time to reach this test metric")
    cp.add_argument("--out", required=True, help="comparison directory")
    cp.set_defaults(func=_cmd_compare, hardware=None)

    sw = sub.add_parser("sweep", help="the paper's ablations over one setting")
    _add_training_arguments(sw)
    sw.add_argument("--optimizer", default="qnewton", help=f"one of {', '.join(OPTIMIZERS)}")
    sw.add_argument("--hardware", default="paper", help="hardware profile")
    sw.add_argument("--param", required=True, choices=["reg", "prune", "gate-time", "hidden"])
    sw.add_argument("--values", required=True, help="comma-separated values")
    sw.add_argument("--out", required=True, help="sweep directory")
    sw.set_defaults(func=_cmd_sweep)

    rp = sub.add_parser("report", help="plots and report.html for a run/compare/sweep dir")
    rp.add_argument("directory")
    rp.set_defaults(func=_cmd_report)

    rr = sub.add_parser("reproduce", help="run the experiments behind the paper's claims")
    rr.add_argument("--quick", action="store_true", help="short runs (minutes)")
    rr.add_argument("--out", default="runs/reproduce", help="output directory")
    rr.add_argument("--no-progress", action="store_true", help="no progress bar")
    rr.set_defaults(func=_cmd_reproduce)

    # Listed for --help only: main() hands `qnewton bench ...` to qnewton.bench.main.
    sub.add_parser("bench", add_help=False, help="benchmark suite (see `qnewton bench --help`)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the suite has its own parser (options pass through untouched)
        from qnewton.bench import main as bench_main

        return int(bench_main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    from qnewton.training import TrainingError

    try:
        return int(args.func(args))
    except (CLIError, ValueError) as exc:
        print(f"qnewton {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"qnewton {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"qnewton {args.command}: interrupted; completed steps are saved "
              "(continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
