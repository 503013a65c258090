"""``qnewton bench [--quick] [--cases A,B] [--out FILE.json] [--markdown FILE.md] [--seed N]``
(also ``python -m qnewton.bench``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qnewton.bench.cases import BENCH_CASES
from qnewton.bench.suite import run_suite, write_results


def parse_cases(text: str) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``, each a registered case name (argparse ``type=``)."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    for name in names:
        if name not in BENCH_CASES:
            raise argparse.ArgumentTypeError(BENCH_CASES.unknown_message(name))
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qnewton bench", description="Run the qnewton benchmark suite."
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="bench.json", help="JSON output (default bench.json)")
    parser.add_argument("--markdown", default=None,
                        help="markdown table output (default: next to --out, .md)")
    parser.add_argument("--cases", type=parse_cases, default=None,
                        help=f"comma-separated subset of: {', '.join(BENCH_CASES)}")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite, write the JSON and the markdown table, print the table; exit status 1 if
    any case failed with an error (an unmet target is not an error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    try:
        result = run_suite(mode, args.cases or None, args.seed,
                           log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except ValueError as exc:
        parser.error(str(exc))
    out = Path(args.out)
    md = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    table = write_results(result, out, md)
    print(table)
    print(f"wrote {out} and {md}")
    return 1 if any(c.get("error") for c in result["cases"]) else 0
