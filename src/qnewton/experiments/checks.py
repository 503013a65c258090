"""The checks every experiment makes before it does any work.

``compare``, ``sweep`` and ``reproduce`` validate all their arguments, the output directory and
every run directory they would write *before* they warm up, train or create anything: a bad
argument costs nothing and leaves nothing behind. Messages start with the argument's name
(``out must ...``, ``values must ...``), which the CLI turns into the flag (``--out must ...``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from qnewton.tasks import TaskConfig, load_task
from qnewton.training import TrainConfig
from qnewton.validation import check_int, check_real

#: The file that marks each kind of result directory (what ``qnewton report`` recognises).
RESULT_FILES = {
    "reproduction": "claims.json",
    "comparison": "comparison.json",
    "sweep": "sweep.json",
}
#: Files of a training run directory (any of them marks one).
RUN_MARKERS = ("config.json", "summary.json", "checkpoint.pt", "steps.jsonl")


def held_result(directory: Path) -> tuple[str, str] | None:
    """``(kind, file)`` of the result ``directory`` holds (``"training run"`` for a run), or
    ``None`` for a directory that holds no qnewton result."""
    for kind, name in RESULT_FILES.items():
        if (directory / name).exists():
            return kind, name
    for name in RUN_MARKERS:
        if (directory / name).exists():
            return "training run", name
    return None


def check_out(out: Any, kind: str) -> Path:
    """``out`` as a path, if it may receive a result of ``kind`` (a key of ``RESULT_FILES``).

    Allowed: a path that does not exist yet, or a directory that holds no qnewton result or a
    result of the same kind (an earlier call's, whose finished runs are reused). Refused: an
    empty path, a file, a path below a file, and a directory holding another kind of result (a
    training run, a sweep, ...), which would otherwise be mixed with this one. Nothing is
    created here (see :func:`make_out`).
    """
    if not isinstance(out, str | os.PathLike) or not str(out).strip():
        raise ValueError(f"out must be a directory path, got {str(out)!r}")
    path = Path(out)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == path else f"lies below the file {parent}"
            raise ValueError(f"out must be a directory (new, or one an earlier {kind} wrote), "
                             f"got {str(out)!r}, which {where}")
        if parent.exists():
            break
    if path.is_dir():
        held = held_result(path)
        if held is not None and held[0] != kind:
            raise ValueError(
                f"out must be a new directory or a {kind} directory, got {str(out)!r}, which "
                f"holds a {held[0]} ({held[1]}); choose another output directory so that the "
                f"{held[0]} stays as it is")
    return path


def make_out(path: Path) -> None:
    """Create ``path`` (with its parents) and check that files can be written there; on failure
    remove what was created and raise ``ValueError`` naming ``out``."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".qnewton-write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        if missing and missing[-1].is_dir():  # the topmost directory this call created
            shutil.rmtree(missing[-1], ignore_errors=True)
        raise ValueError(f"out must be a writable directory, got {str(path)!r}: "
                         f"{exc.strerror or exc}") from None


def check_distinct(name: str, items: Iterable[Any], key: Callable[[Any], Any] = lambda x: x,
                   show: Callable[[Any], str] = str) -> None:
    """Refuse a list that names the same thing twice (it would be run twice)."""
    seen: dict[Any, Any] = {}
    for item in items:
        k = key(item)
        if k in seen:
            same = "" if show(seen[k]) == show(item) else f" ({show(seen[k])} and {show(item)})"
            raise ValueError(f"{name} must not repeat an entry, got {show(item)} twice{same}")
        seen[k] = item


def check_repeats(repeats: Any) -> int:
    return check_int("repeats", repeats, 1)


def task_metric(config: TrainConfig) -> str:
    """The test metric of ``config``'s task (``accuracy`` or ``perplexity``), from its data."""
    task = load_task(TaskConfig(name=config.task, hidden=config.hidden, seed=config.seed,
                                tiny=config.tiny))
    return task.metric_name


def check_target(name: str, target: Any, config: TrainConfig) -> float | None:
    """``None``, or a test-metric level the task's metric can take: an accuracy in (0, 1], a
    perplexity >= 1."""
    if target is None:
        return None
    value = check_real(name, target, low=0.0, low_open=True)
    metric = task_metric(config)
    if metric == "accuracy" and value > 1.0:
        raise ValueError(f"{name} must be a test accuracy in (0, 1] for task {config.task}, "
                         f"got {target!r}")
    if metric == "perplexity" and value < 1.0:
        raise ValueError(f"{name} must be a test perplexity >= 1 for task {config.task} (lower "
                         f"is better), got {target!r}")
    return value


def check_values(name: str, values: Sequence[Any], check: Callable[[Any], Any],
                 allowed: str) -> list[Any]:
    """Every one of ``values`` checked by ``check`` (which raises ``ValueError``), all of them
    before any is used; the error names the bad value and what ``name`` allows."""
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must list at least one value, got {values!r}")
    out = []
    for position, value in enumerate(values, 1):
        try:
            out.append(check(value))
        except ValueError:
            raise ValueError(f"{name} must all be {allowed}, got {value!r} (value {position} of "
                             f"{len(values)})") from None
    return out
