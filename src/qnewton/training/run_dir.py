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


@dataclass
class RunState:
    """Position in the run (saved in the checkpoint)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    last_eval: dict[str, float] | None = None


def prepare_run_dir(out: Path, resume: bool) -> None:
    """Create/check the run directory; refuse to overwrite a finished or foreign run."""
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} exists and is not a directory")
    has_run = (out / "config.json").exists()
    if resume and not (out / "checkpoint.pt").exists():
        raise TrainingError(f"--resume: no checkpoint in {out}; start a new run without --resume")
    if not resume and has_run:
        raise TrainingError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"--out {out} is not writable: {exc.strerror or exc}") from None


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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents; an unreadable one raises :class:`RunFileError` naming it."""
    try:
        checkpoint = torch.load(path, weights_only=False)
    except Exception as exc:  # torch raises several types for damaged files
        raise RunFileError(
            f"{path}: the checkpoint cannot be read ({str(exc).splitlines()[0][:200]}); it is "
            "damaged, so this run cannot be resumed: start a new run with another --out"
        ) from None
    if not isinstance(checkpoint, dict) or not {"model", "optimizer", "ledger", "state"} <= set(
            checkpoint):
        raise RunFileError(f"{path}: not a qnewton checkpoint (missing model/optimizer/ledger/"
                           "state); start a new run with another --out")
    return checkpoint
