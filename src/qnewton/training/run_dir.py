"""A run directory: its files, its checkpoint, and the rules that keep finished results safe.

A run directory holds

* ``config.json``   the :class:`~qnewton.training.config.TrainConfig`, the task description and
  the machine rates used;
* ``steps.jsonl``   one row per optimizer step (loss, cumulative measured / modeled / total
  seconds, solves); rows with evaluation metrics where the test set was evaluated;
* ``solves.jsonl``  one :class:`~qnewton.accounting.SolveRecord` per block solve;
* ``events.jsonl``  everything that was handled (fallbacks, retries, skipped blocks);
* ``summary.json``  final metrics and time totals (``status`` says whether the run completed);
* ``checkpoint.pt`` model, optimizer and ledger state after the last completed step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qnewton.accounting import Ledger
from qnewton.files import RunFileError

RUN_FILES = ("config.json", "steps.jsonl", "solves.jsonl", "events.jsonl", "summary.json",
             "checkpoint.pt")


class TrainingError(RuntimeError):
    """A run could not start or had to stop (bad directory, non-finite loss, ...)."""


class RunDirError(TrainingError, ValueError):
    """The run directory cannot be used as asked (a usage error, reported before any file is
    written; the CLI exits with status 2). The message names ``--out``/``--resume``."""


@dataclass
class RunState:
    """Position in the run (saved in the checkpoint)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    last_eval: dict[str, float] | None = None


def run_dir_path(out: str | Path) -> Path:
    """``out`` as a path; an empty string (which ``Path`` would read as ``.``) is refused."""
    if isinstance(out, str) and not out.strip():
        raise RunDirError(f"--out must be a directory path, got {out!r}")
    return Path(out)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_run_dir(out: Path, resume: bool) -> None:
    """Refuse a run directory that cannot be used, without creating or changing anything.

    ``out`` must be a directory or creatable as one, writable, and (without ``resume``) hold no
    run files, so that finished results are never overwritten; with ``resume`` it must hold a
    checkpoint.
    """
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} exists and is not a directory")
    existing = _nearest_existing(out)
    if not existing.is_dir():
        raise RunDirError(f"--out {out} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {out} is not writable (no write permission on {existing})")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if resume and "checkpoint.pt" not in present:
        if "config.json" in present:
            raise RunDirError(f"--resume: {out} holds a run but no checkpoint.pt (the run stopped "
                              "before its first step, or the file was removed), so it cannot be "
                              "resumed; choose another --out to start again")
        raise RunDirError(f"--resume: no checkpoint in {out}; start a new run without --resume")
    if not resume and "config.json" in present:
        raise RunDirError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    if not resume and present:
        raise RunDirError(f"{out} already holds run files ({', '.join(present)}); choose another "
                          "--out")


def create_run_dir(out: Path) -> None:
    """Create ``out`` (and its parents) and make sure a file can be written in it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"--out {out} is not writable: {exc.strerror or exc}") from None


def discard_unstarted_run(out: Path, created: bool) -> None:
    """Remove what a run wrote before it failed without completing a step — config.json, the
    empty logs, a summary — and ``out`` itself if this run ``created`` it and it is now empty.
    Such a folder holds no result and no checkpoint: left as it was, it could be neither
    resumed nor reused. Files the run did not write (none, :func:`check_run_dir` saw to it) and
    a directory that existed before are kept."""
    for name in RUN_FILES:
        with contextlib.suppress(OSError):
            (out / name).unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()  # only if empty


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    ledger: Ledger, state: RunState) -> None:
    """Write the checkpoint atomically (a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "ledger": ledger.state_dict(),
            "state": dataclasses.asdict(state),
        },
        tmp,
    )
    os.replace(tmp, path)


def _first_sentence(exc: Exception) -> str:
    """The gist of a library's error (torch's can run to many lines of advice)."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0].split(". ")[0].rstrip(":.")[:200]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents; an unreadable one raises :class:`RunFileError` naming it."""
    try:
        checkpoint = torch.load(path, weights_only=False)
    except Exception as exc:  # torch raises several types for damaged files
        raise RunFileError(
            f"{path}: the checkpoint cannot be read ({_first_sentence(exc)}); it is damaged, so "
            "this run cannot be resumed: start a new run with another --out"
        ) from None
    if not isinstance(checkpoint, dict) or not {"model", "optimizer", "ledger", "state"} <= set(
            checkpoint):
        raise RunFileError(f"{path}: not a qnewton checkpoint (missing model/optimizer/ledger/"
                           "state); start a new run with another --out")
    return checkpoint


def restore_checkpoint(path: Path, checkpoint: dict[str, Any], model: torch.nn.Module,
                       optimizer: torch.optim.Optimizer, ledger: Ledger) -> RunState:
    """Load ``checkpoint`` (read from ``path``) into the run's objects; the run's position.

    A checkpoint that does not fit this run's model and optimizer raises :class:`RunFileError`
    naming it.
    """
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        ledger.load_state_dict(checkpoint["ledger"])
        state = RunState(**checkpoint["state"])
        if not isinstance(state.step, int) or state.step < 0:
            raise ValueError(f"bad step {state.step!r}")
    except Exception as exc:  # load_state_dict raises several types for mismatched state
        raise RunFileError(
            f"{path}: the checkpoint does not fit this run ({_first_sentence(exc)}); it is "
            "damaged, so this run cannot be resumed: start a new run with another --out"
        ) from None
    return state
