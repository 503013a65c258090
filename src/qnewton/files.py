"""Run files: atomic JSON, JSON-lines with one rule for a torn line, and a named error.

Every file qnewton writes is either written atomically (a temporary file, then a rename) or is
append-only JSON lines. A run killed mid-write can therefore leave at most one damaged line, the
last one of a JSON-lines file. :func:`read_jsonl` applies that rule everywhere: a torn *last* line
is dropped (and counted), any other unreadable line is corruption and raises
:class:`RunFileError` naming the file, the line and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class RunFileError(ValueError):
    """A run file is unreadable or inconsistent; the message names the file and what to do."""


def dumps(data: Any, **kwargs: Any) -> str:
    """``json.dumps`` of a run-file row. Non-finite floats (an infinite κ bound) are written as
    ``Infinity``/``NaN``, the extension Python's ``json`` module reads back; readers that need
    strict JSON convert them first."""
    return json.dumps(data, **kwargs)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:  # no half-written .tmp is left behind
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def check_writable_file(path: str | Path, name: str) -> Path:
    """``path`` as a file that can be written: its directory exists and is writable, and it is
    not a directory. Raises ValueError naming ``name`` otherwise (checked before any work)."""
    path = Path(path)
    if str(path) in ("", "."):
        raise ValueError(f"{name} must be a file path, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{name} must be a file path, got the directory {str(path)!r}")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {str(path)!r}: the directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{name} {str(path)!r}: the directory {str(parent)!r} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{name} {str(path)!r} exists and is not writable")
    return path


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file; a missing or corrupt file raises :class:`RunFileError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{path}: {what} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(
            f"{path}: {what} is not valid JSON ({exc}); restore it from a copy or start a new run"
        ) from None


@dataclass
class JsonLines:
    """Rows of a JSON-lines file and whether a torn last line was dropped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    torn_last_line: bool = False


def read_jsonl_file(path: str | Path) -> JsonLines:
    """Read a JSON-lines file with the torn-line rule (see the module docstring).

    A missing file reads as no rows. Blank lines are skipped. Raises :class:`RunFileError` for an
    unreadable line that is not the last one, or a line that is not a JSON object.
    """
    path = Path(path)
    if not path.exists():
        return JsonLines()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot be read ({exc}); restore it from a copy or start a "
                           "new run") from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    out = JsonLines()
    for pos, (number, line) in enumerate(numbered):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if pos == len(numbered) - 1:
                out.torn_last_line = True  # a run killed mid-write: drop the torn line
                break
            raise RunFileError(
                f"{path}: line {number} is not valid JSON and is not the last line (the file is "
                "corrupt, not just cut short); restore it or start a new run"
            ) from None
        if not isinstance(row, dict):
            raise RunFileError(f"{path}: line {number} is not a JSON object (the file is "
                               "corrupt); restore it from a copy or start a new run")
        out.rows.append(row)
    return out


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of :func:`read_jsonl_file` (a torn last line dropped silently)."""
    return read_jsonl_file(path).rows


def append_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append rows, one JSON object per line, flushed."""
    if rows:
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write("".join(dumps(r) + "\n" for r in rows))
            fh.flush()


def truncate_jsonl(path: str | Path, last_step: int) -> None:
    """Keep only rows with ``step <= last_step`` (what a checkpoint covers), atomically."""
    path = Path(path)
    rows = [r for r in read_jsonl(path) if r.get("step", -1) <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)
