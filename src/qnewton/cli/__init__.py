"""Command-line interface: ``qnewton <command>`` (also ``python -m qnewton``)."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import qnewton
from qnewton.cli import calibrate, estimate, runs, validate_qlsa
from qnewton.cli.errors import CLIError, as_flag_message, flag_names


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each flag's default, unless its help already says it or it has none
    (``None``, a switch's ``False``); a default of 0 is shown."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False,
                                                                   argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


FORMATTER = HelpWithDefaults


class OneLineErrors(argparse.ArgumentParser):
    """A usage error is one line naming the command (argparse prints the whole usage first:
    24 lines for ``train``); its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def unknown_flags_message(extra: Sequence[str], flags: Sequence[str]) -> str:
    """``unrecognized arguments: ...``, and for each mistyped flag the command's flag it most
    likely meant."""
    hints = []
    for arg in extra:
        name = arg.split("=", 1)[0]
        if name.startswith("--"):
            close = difflib.get_close_matches(name, flags, n=1, cutoff=0.75)
            if close:
                hints.append(f"{name}: did you mean {close[0]}?")
    return f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(hints)})" if hints
                                                           else "")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="qnewton",
        description="Newton's-method training with hybrid quantum-classical scheduling.",
    )
    parser.add_argument("--version", action="version", version=f"qnewton {qnewton.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser(
        "estimate",
        help="modeled quantum vs predicted classical time for one linear system",
        description="For one N×N system with d nonzeros per row and condition number kappa, "
        "print the QLSA query count, the modeled quantum seconds on a hardware profile, each "
        "classical solver's predicted seconds on this machine, and the scheduler's choice.",
        formatter_class=FORMATTER,
    )
    estimate.add_arguments(est)
    est.set_defaults(func=estimate.run)
    runs.add_commands(sub, FORMATTER)
    vq = sub.add_parser(
        "validate-qlsa",
        help="check the QSVT-output QLSA backends on random regularized Fisher blocks",
        description="For each block size N, condition number κ and error ε: the inversion "
        "polynomial's degree against the query models, the success probability, the polynomial "
        "backend's error against ε and the emulated backend's, the circuit backend's difference "
        "from the polynomial backend, and measured seconds.",
        formatter_class=FORMATTER,
    )
    validate_qlsa.add_arguments(vq)
    vq.set_defaults(func=validate_qlsa.run)
    cal = sub.add_parser(
        "calibrate",
        help="measure, show or reset this machine's rates for the classical time models",
        description="The rates (dense and GEMM flop rates, memory bandwidth, per-call and "
        "per-iteration overheads) decide where each Hessian system is routed. Without a flag: "
        "measure now and cache them unless the machine was under load during the probe; "
        "--show: print the cached rates and their provenance; --reset: delete the cache.",
        formatter_class=FORMATTER,
    )
    calibrate.add_arguments(cal)
    cal.set_defaults(func=calibrate.run)
    # Listed for --help only: main() hands `qnewton bench ...` to qnewton.bench.main.
    sub.add_parser("bench", add_help=False, help="benchmark suite (see `qnewton bench --help`)")
    for command in sub.choices.values():  # errors are reported with each command's flag names
        command.set_defaults(flag_names=flag_names(command))
    return parser


def _after_interrupt(args: argparse.Namespace) -> str:
    if args.command != "train":  # compare, sweep and reproduce reuse and resume their runs
        return "finished runs are kept; run the same command again to continue"
    if (Path(args.out) / "checkpoint.pt").exists():
        return f"completed steps are saved in {args.out} (continue with --resume)"
    return "no step was completed, so there is nothing to resume"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the suite has its own parser (options pass through untouched)
        from qnewton.bench import main as bench_main

        return int(bench_main(argv[1:]))
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the command they were given to, not by `qnewton`
            command = f"qnewton {args.command}"
            flags = sorted(set(args.flag_names.values()))
            parser.exit(2, f"{command}: error: {unknown_flags_message(extra, flags)} "
                           f"(see `{command} --help`)\n")
    except SystemExit as exc:  # --help (0), or a usage error argparse has printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    args.raw_argv = argv  # `train --nproc N` relaunches these arguments on N ranks
    from qnewton.distributed import DistributedError
    from qnewton.distributed.context import PEER_STOPPED_EXIT
    from qnewton.training import TrainingError

    try:
        return int(args.func(args))
    except ValueError as exc:  # CLIError, RunFileError, RunDirError, the library's validation
        message = as_flag_message(str(exc), args.flag_names)
        print(f"qnewton {args.command}: error: {message}", file=sys.stderr)
        return 2
    except DistributedError as exc:  # another rank stopped first: the launcher names it
        print(f"qnewton {args.command}: {exc}", file=sys.stderr)
        return PEER_STOPPED_EXIT
    except TrainingError as exc:
        print(f"qnewton {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"qnewton {args.command}: interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return 130


__all__ = ["CLIError", "build_parser", "main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
