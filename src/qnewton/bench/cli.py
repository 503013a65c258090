"""``qnewton bench [--quick] [--cases A,B] [--out FILE.json] [--markdown FILE.md] [--seed N]
[--threads N]`` (also ``python -m qnewton.bench``).

Every argument is checked before anything runs (the suite takes minutes): case names, the seed,
the thread count, and that ``--out`` and ``--markdown`` are file paths that can be written (a
probe file is created and removed in the nearest existing folder; missing folders are created
only when the results are written). A bad argument exits with status 2 and one line that names
the flag and what is allowed. The JSON is rewritten (atomically) after every finished case, so
an interrupted or killed run keeps the cases it finished.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qnewton.bench.cases import BENCH_CASES
from qnewton.bench.suite import MAX_SEED, check_cases, run_suite, to_jsonable, write_results
from qnewton.files import dumps
from qnewton.validation import check_int


def parse_cases(text: str) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``: at least one registered case name, each once, no empty items
    (``ValueError`` naming ``--cases`` otherwise)."""
    names = [c.strip() for c in text.split(",")]
    if not any(names):
        return check_cases([], "--cases")
    if not all(names):
        raise ValueError(f"--cases must be a comma-separated list of case names without empty "
                         f"items; got {text!r}")
    return check_cases(names, "--cases")


def parse_int(flag: str, text: str, minimum: int, maximum: int | None) -> int:
    """``text`` as an integer in ``[minimum, maximum]``; the error names ``flag``."""
    try:
        value: Any = int(text)
    except ValueError:
        value = text
    return check_int(flag, value, minimum, maximum)


def check_output_file(flag: str, text: str) -> Path:
    """A file path that can be written: not a directory, its nearest existing ancestor a
    writable directory (checked by creating and removing a probe file there)."""
    if not text.strip():
        raise ValueError(f"{flag} must be a file path; got {text!r}")
    if text.endswith(("/", os.sep)):
        raise ValueError(f"{flag} must be a file path, not a directory; got {text!r}")
    path = Path(text)
    folder = path.parent
    try:
        if path.is_dir():
            raise ValueError(f"{flag} must be a file path, but {text} is a directory")
        if path.exists() and not path.is_file():
            raise ValueError(f"{flag} must be a regular file path, but {text} is not a file")
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise ValueError(f"{flag} must be a file path in a folder, but {folder} (in {text}) "
                             "is a file")
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".qnewton-bench-", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{flag} must be a writable file path, but no file can be created in "
                         f"{folder} ({exc.strerror or exc})") from None
    return path


@dataclass(frozen=True)
class BenchArgs:
    """The validated command line."""

    mode: str
    cases: list[str] | None
    seed: int
    threads: int
    out: Path
    markdown: Path


def validate(args: argparse.Namespace) -> BenchArgs:
    """Check every argument (nothing is run or written); ``ValueError`` names the flag."""
    cases = None if args.cases is None else parse_cases(args.cases)
    seed = parse_int("--seed", args.seed, 0, MAX_SEED)
    threads = parse_int("--threads", args.threads, 1, os.cpu_count())
    out = check_output_file("--out", args.out)
    if args.markdown is None:
        markdown = out.with_suffix(".md")
        if markdown == out:
            raise ValueError(f"--out must not end in .md unless --markdown is given (the table "
                             f"is written next to --out with that suffix); got {args.out!r}")
        check_output_file("--markdown (default: --out with .md)", str(markdown))
    else:
        markdown = check_output_file("--markdown", args.markdown)
        if markdown.resolve() == out.resolve():
            raise ValueError(f"--markdown must differ from --out; both are {args.out!r}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    return BenchArgs(mode, cases, seed, threads, out, markdown)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qnewton bench", description="Run the qnewton benchmark suite: each case against "
        "its baseline in interleaved rounds, with torch pinned to --threads threads; a case is "
        "met, missed or noisy (the target inside the repeats' spread, or the load average above "
        "the cores)."
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="bench.json", help="JSON output (default bench.json)")
    parser.add_argument("--markdown", default=None,
                        help="markdown table output (default: next to --out, .md)")
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated subset of: {', '.join(BENCH_CASES)}")
    parser.add_argument("--seed", default="0", help="integer >= 0 (default 0)")
    parser.add_argument("--threads", default="1",
                        help="torch threads while measuring (default 1: one thread, pinned)")
    return parser


def _save_elsewhere(result: dict[str, Any], out: Path, exc: OSError) -> None:
    """Last resort when ``out`` cannot be written after all: a temporary file, else stdout."""
    print(f"qnewton bench: could not write {out} ({exc.strerror or exc})", file=sys.stderr)
    fallback = Path(tempfile.gettempdir()) / f"qnewton-bench-{os.getpid()}.json"
    try:
        write_results(result, fallback, fallback.with_suffix(".md"))
        print(f"qnewton bench: the results are saved in {fallback} instead", file=sys.stderr)
    except OSError:
        print(dumps(to_jsonable(result), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Check the arguments, run the suite, write the JSON and the markdown table, print the
    table. Exit status 2 for a bad argument (nothing run), 1 if a case failed with an error
    (an unmet or noisy target is not an error) or the results could not be written where
    asked, 130 if interrupted (finished cases are kept)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        a = validate(args)
    except ValueError as exc:
        print(f"qnewton bench: error: {exc}", file=sys.stderr)
        return 2
    latest: dict[str, Any] = {}

    def save(result: dict[str, Any]) -> None:
        latest["result"] = result
        try:
            write_results(result, a.out, a.markdown)
        except OSError as exc:  # keep measuring; the final write reports it
            latest["write_error"] = exc

    try:
        result = run_suite(a.mode, a.cases, a.seed, threads=a.threads, on_case=save,
                           log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        partial = latest.get("result")
        if not partial:
            print("qnewton bench: interrupted before any case finished; nothing written",
                  file=sys.stderr)
            return 130
        partial["interrupted"] = True
        try:
            write_results(partial, a.out, a.markdown)
        except OSError as exc:
            _save_elsewhere(partial, a.out, exc)
            return 130
        print(f"qnewton bench: interrupted; the {len(partial['cases'])} finished case(s) are in "
              f"{a.out} and {a.markdown}", file=sys.stderr)
        return 130
    try:
        table = write_results(result, a.out, a.markdown)
    except OSError as exc:
        _save_elsewhere(result, a.out, exc)
        return 1
    print(table)
    print(f"wrote {a.out} and {a.markdown}")
    return 1 if any(c.get("error") for c in result["cases"]) else 0
