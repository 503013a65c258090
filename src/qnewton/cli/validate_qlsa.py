"""``qnewton validate-qlsa``: the QSVT-output backends checked on random regularized Fisher
blocks (docs/method.md §4.11); prints the markdown table, ``--out`` writes the rows as JSON."""

from __future__ import annotations

import argparse

from qnewton.cli.errors import CLIError
from qnewton.experiments.qlsa_validation import (
    VALIDATION_BACKENDS,
    validate_qlsa,
    validation_markdown,
)
from qnewton.files import check_writable_file, write_json_atomic


def _list(text: str, convert, flag: str) -> list:
    try:
        return [convert(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CLIError(f"{flag} must be a comma-separated list of numbers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="4,8,16,64", help="block sizes N (comma-separated, >= 2)")
    p.add_argument("--kappas", default="10,100",
                   help="condition numbers κ of the blocks (comma-separated, > 1)")
    p.add_argument("--eps", default="0.01", help="QLSA errors ε (comma-separated, in (0, 1))")
    p.add_argument("--seed", type=int, default=0, help="seed of the first case (+1 per case)")
    p.add_argument("--backends", default=",".join(VALIDATION_BACKENDS),
                   help=f"comma-separated, among {', '.join(VALIDATION_BACKENDS)} "
                   "(polynomial always runs: it is the reference)")
    p.add_argument("--out", default=None, help="write the rows as JSON to this file")


def run(args: argparse.Namespace) -> int:
    backends = tuple(name.strip() for name in args.backends.split(",") if name.strip())
    if args.out:
        try:  # before the work, which takes seconds to minutes
            check_writable_file(args.out, "--out")
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    rows = validate_qlsa(_list(args.sizes, int, "--sizes"), _list(args.kappas, float, "--kappas"),
                         _list(args.eps, float, "--eps"), seed=args.seed, backends=backends)
    print(validation_markdown(rows))
    print("\nAll seconds are measured wall clock on this machine (emulating the quantum run); "
          "circuit s excludes phase finding (phases s, cached per polynomial).")
    if args.out:
        try:
            write_json_atomic(args.out, {"rows": rows, "time_kind": "measured"})
        except OSError as exc:  # the table above is the result; say why the file is missing
            raise CLIError(f"--out {args.out}: could not write the rows ({exc.strerror or exc}); "
                           "the table above has them") from None
        print(f"rows written to {args.out}")
    return 0
