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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (CLIError, ValueError) as exc:
        print(f"qnewton {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
