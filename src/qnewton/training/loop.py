"""A training run: one task, one optimizer, files a researcher can read, resume and compare.

Times: ``measured_seconds`` is wall clock of the training work on this machine (evaluation and
diagnostics excluded), ``modeled_quantum_seconds`` is the cost model's time for the quantum solves
on the named hardware profile, and ``total_seconds = measured − emulation + modeled`` (the time
spent emulating quantum solves classically is replaced by their modeled time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from qnewton import calibration
from qnewton.accounting import Ledger
from qnewton.curvature import CURVATURES
from qnewton.distributed import RunGroup
from qnewton.files import (
    RunFileError,
    append_jsonl,
    read_json,
    read_jsonl,
    truncate_jsonl,
    write_json_atomic,
)
from qnewton.quantum import HARDWARE_PROFILES
from qnewton.solvers import MachineRates
from qnewton.tasks import Task, load_task
from qnewton.training.config import TrainConfig
from qnewton.training.machine import machine_state
from qnewton.training.optimizers import OPTIMIZERS
from qnewton.training.run_dir import (
    RunDirError,
    RunState,
    TrainingError,
    check_run_dir,
    create_run_dir,
    discard_unstarted_run,
    load_checkpoint,
    restore_checkpoint,
    run_dir_path,
    save_checkpoint,
)

LOGS = ("steps.jsonl", "solves.jsonl", "events.jsonl")


def build_optimizer(config: TrainConfig, model: torch.nn.Module, rates: MachineRates,
                    ledger: Ledger) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` (Newton family: :class:`~qnewton.QNewton`)."""
    return OPTIMIZERS[config.optimizer].build(config, model, rates, ledger)


def _first_order_step(optimizer: torch.optim.Optimizer, closure: Callable[[], Any],
                      ledger: Ledger, group: RunGroup | None = None) -> torch.Tensor:
    with ledger.phase("forward_backward"):
        optimizer.zero_grad(set_to_none=True)
        out = closure()
        losses = out[0] if isinstance(out, tuple) else out
        loss = losses.mean()
        if bool(torch.isfinite(loss)):
            loss.backward()
    if group is not None and group.ctx is not None:  # distributed seam: global-batch gradients
        loss = group.average_gradients(
            [p for g in optimizer.param_groups for p in g["params"]], losses, ledger)
    if bool(torch.isfinite(loss)):
        with ledger.phase("update"):
            optimizer.step()
    return loss.detach()


def _epoch_order(config: TrainConfig, epoch: int, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


def _evaluate(task: Task, model: torch.nn.Module, ledger: Ledger) -> dict[str, float]:
    with ledger.diagnostics():
        test = task.evaluate(model, task.x_test, task.y_test)
    return {f"test_{k}": float(v) for k, v in test.items()}


def _totals(ledger: Ledger) -> dict[str, Any]:
    s = ledger.summary()
    return {k: s[k] for k in ("measured_seconds", "modeled_quantum_seconds", "emulation_seconds",
                              "total_seconds", "quantum_solves", "classical_solves",
                              "critical_path_seconds") if k in s}  # the last: distributed runs


def _summary(config: TrainConfig, task: Task, ledger: Ledger, state: RunState, status: str,
             newton_blocks: dict[str, int], rates: MachineRates) -> dict[str, Any]:
    metrics = dict(state.last_eval or {})
    summary: dict[str, Any] = {
        "status": status,
        "task": config.task,
        "optimizer": config.optimizer,
        "hardware": config.hardware if config.is_newton else None,
        "hardware_label": HARDWARE_PROFILES[config.hardware].label() if config.is_newton else None,
        "steps": state.step,
        "epochs_completed": state.epoch,
        "metric": task.metric_name,
        **metrics,
    }
    if task.kind == "lm" and "test_perplexity" in metrics:
        summary["perplexity"] = metrics["test_perplexity"]
    summary.update(ledger.summary())
    summary["newton_solved_blocks"] = newton_blocks
    summary["time_labels"] = {
        "measured_seconds": "measured: wall clock on this machine (training work only)",
        "modeled_quantum_seconds": "modeled: QLSA cost model on the "
                                   f"'{HARDWARE_PROFILES[config.hardware].label()}' profile",
        "total_seconds": "measured - emulation + modeled_quantum",
    }
    summary["rates"] = rates.to_dict()  # the classical predictions' rates, with provenance
    summary["machine_at_end"] = machine_state()
    return summary


def _make_closure(task: Task, model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                  with_outputs: bool) -> Callable[[], Any]:
    def closure():
        losses, outputs = task.losses(model, xb, yb)
        if with_outputs:
            return losses, outputs
        if task.kind == "lm":
            # One Fisher sample per sequence (its mean token loss): tokens of a sequence are
            # coupled by attention, sequences are not. Same objective (equal lengths).
            return losses.reshape(xb.shape[0], -1).mean(dim=1)
        return losses

    return closure


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _read_saved_run(out: Path, config: TrainConfig) -> tuple[MachineRates, dict[str, Any]]:
    """What ``--resume`` needs from ``out``, read and checked before anything is changed: the
    saved machine rates and the checkpoint. The logs are read too, so that a damaged one stops
    the resume before any of them is truncated."""
    path = out / "config.json"
    if not path.exists():
        raise RunFileError(f"{path}: missing, so the run's settings are unknown and it cannot be "
                           "resumed; restore it from a copy or start a new run with another --out")
    saved = read_json(path, "the run's config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict) or (
            "rates" not in saved):
        raise RunFileError(f"{path}: not a qnewton run config (no 'config' and 'rates'); restore "
                           "it from a copy or start a new run with another --out")
    saved_config = TrainConfig.with_defaults(saved["config"])
    if saved_config != config.to_dict():
        diff = "; ".join(f"{_flag(k)} {saved_config.get(k)!r} -> {v!r}"
                         for k, v in config.to_dict().items() if saved_config.get(k) != v)
        raise RunDirError(f"--resume with different settings (saved -> given): {diff}; resume "
                          "with the saved settings or start a new run with another --out")
    try:
        rates = MachineRates.from_dict(saved["rates"])
    except ValueError as exc:
        raise RunFileError(f"{path}: the saved machine rates are invalid ({exc}); restore it from "
                           "a copy or start a new run with another --out") from None
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    for name in LOGS:
        read_jsonl(out / name)
    return rates, checkpoint


def _check_batch_size(config: TrainConfig, n_train: int) -> None:
    if config.batch_size is not None and config.batch_size > n_train:
        tiny = " (tiny)" if config.tiny else ""
        raise ValueError(f"batch_size must be at most the size of the training set, {n_train} "
                         f"examples for task {config.task}{tiny}; got {config.batch_size}")
    batch = min(config.batch, n_train)
    if config.curvature_batch is not None and config.curvature_batch > batch:
        # an error, not the silent "all samples" of a larger subset, so that config.json
        # records the curvature batch actually used
        raise ValueError(f"curvature_batch must be at most the mini-batch size, {batch}; got "
                         f"{config.curvature_batch}")


def _resume_logs(out: Path, step: int) -> dict[str, int]:
    """Cut the logs back to what the checkpoint at ``step`` covers; returns the blocks solved
    by Newton steps so far. steps.jsonl counts completed steps (1-based); solves and events
    carry the 0-based index of the step they belong to."""
    path = out / "steps.jsonl"
    last = max((r.get("step", -1) for r in read_jsonl(path)), default=None)
    if last is None or last < step:
        what = ("is missing" if not path.exists() else "has no rows" if last is None
                else f"ends at step {last}")
        raise RunFileError(f"{path}: {what} but the checkpoint is at step {step}, so the run's "
                           "history is incomplete; restore it from a copy or start a new run "
                           "with another --out")
    truncate_jsonl(path, step)
    truncate_jsonl(out / "solves.jsonl", step - 1)
    truncate_jsonl(out / "events.jsonl", step - 1)
    newton_blocks: dict[str, int] = {}
    for row in read_jsonl(out / "solves.jsonl"):
        block = row.get("block")
        if block is not None and row.get("fallback") is None:
            newton_blocks[block] = newton_blocks.get(block, 0) + 1
    return newton_blocks


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          on_step: Callable[[dict[str, Any]], None] | None = None,
          rates: MachineRates | None = None) -> dict[str, Any]:
    """:func:`_train` on this process's ranks: under ``torchrun`` (or in a process group the
    caller initialized) every rank trains on its shard of each batch and only rank 0 writes
    (docs/method.md §4.10); otherwise a single process."""
    group = RunGroup.join()  # distributed seam: join torchrun's group, if any
    # On an error the group is left to the process's exit: tearing it down with a dead peer
    # can block (nccl), and the error must reach the user.
    summary = _train(config, out, resume=resume, progress=progress, on_step=on_step,
                     rates=rates, group=group)
    group.close()
    return summary


def _train(config: TrainConfig, out: str | Path, *, resume: bool, progress: bool,
           on_step: Callable[[dict[str, Any]], None] | None, rates: MachineRates | None,
           group: RunGroup) -> dict[str, Any]:
    """Run (or resume) a training run into ``out``; returns the summary.

    Everything is checked before any file is written or changed: the directory
    (:class:`RunDirError`), a resumed run's files (:class:`~qnewton.files.RunFileError`) and a
    ``batch_size`` larger than the task's training set (``ValueError``; it is an error rather
    than a silent clamp, so config.json always records the batch size used).

    ``rates`` are the classical time models' machine rates (default: calibrated, cached, on
    rank 0 and shared; a resumed run uses the rates it started with). On several ranks, only
    rank 0 (``group.writer``) writes files; every rank checks everything first. ``on_step`` is
    called with each step's row after it has been written (for tests and embedding); an
    exception it raises interrupts the run like Ctrl-C would.
    """
    out = run_dir_path(out)
    check_run_dir(out, resume)
    checkpoint = None
    created = False
    if resume:
        rates, checkpoint = _read_saved_run(out, config)
    task = load_task(config.task_config())
    _check_batch_size(config, task.x_train.shape[0])
    group.check_batches(config.batch, task.x_train.shape[0])
    group.barrier("the ranks' checks of the run directory")  # all checked before rank 0 writes
    if rates is None:
        rates = group.from_writer(calibration.calibrate, "broadcast of machine rates")
    model = task.model
    ledger = Ledger()
    optimizer = build_optimizer(config, model, rates, ledger)
    if checkpoint is not None:
        state = restore_checkpoint(out / "checkpoint.pt", checkpoint, model, optimizer, ledger)
        newton_blocks = {}
        if group.writer:
            create_run_dir(out)  # only checks that it is still writable
            newton_blocks = _resume_logs(out, state.step)
    elif not group.writer:
        state, newton_blocks = RunState(), {}
    else:
        state = RunState()
        newton_blocks = {}
        created = not out.exists()
        create_run_dir(out)
        for name in LOGS:
            (out / name).write_text("", encoding="utf-8")
        write_json_atomic(out / "config.json", {
            "config": config.to_dict(),
            "task": task.description,
            "rates": rates.to_dict(),
            "machine_at_start": machine_state(),
            "learning_rate": config.learning_rate,
            "torch_version": torch.__version__,
        })
        state.last_eval = _evaluate(task, model, ledger)
        append_jsonl(out / "steps.jsonl", [{"step": 0, "epoch": 0, "initial": True,
                                            **state.last_eval, **_totals(ledger)}])

    n_train = task.x_train.shape[0]
    batch = config.batch
    batches_per_epoch = math.ceil(n_train / batch)
    total_steps = config.epochs * batches_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    bar = _progress_bar(progress and group.writer, total_steps, state.step)
    status = "completed"
    with_outputs = config.is_newton and (config.curvature == "auto"
                                         or CURVATURES[config.curvature].needs_outputs)
    try:
        while state.step < total_steps:
            order = _epoch_order(config, state.epoch, n_train)
            idx = group.shard(order[state.batch * batch:(state.batch + 1) * batch])
            closure = _make_closure(task, model, task.x_train[idx], task.y_train[idx],
                                    with_outputs)
            if config.is_newton:
                loss = optimizer.step(closure)
            else:
                loss = _first_order_step(optimizer, closure, ledger, group)
            if not bool(torch.isfinite(loss)):
                status = f"stopped: non-finite loss ({float(loss)}) at step {state.step + 1}"
                raise TrainingError(
                    f"{status}; the last good checkpoint (step {state.step}) is kept in {out}"
                )
            records, events = ledger.drain()
            for r in records:
                if r.fallback is None:
                    newton_blocks[r.block] = newton_blocks.get(r.block, 0) + 1
            state.step += 1
            state.batch += 1
            epoch_done = state.batch >= batches_per_epoch
            if epoch_done:
                state.epoch += 1
                state.batch = 0
            row: dict[str, Any] = {"step": state.step, "epoch": state.epoch,
                                   "loss": float(loss), **ledger.take_curvature(),
                                   **_totals(ledger)}
            info = getattr(optimizer, "last_step_info", None)
            if info is not None:  # the adaptive step rule's λ, α, ρ (docs/method.md §4.12)
                row["step_rule"] = {k: v for k, v in info.items() if k != "step"}
            due = (config.eval_every and state.step % config.eval_every == 0) or (
                not config.eval_every and epoch_done)
            if (due or state.step == total_steps) and group.writer:
                state.last_eval = _evaluate(task, model, ledger)
                row.update(state.last_eval)
            if not group.writer:  # distributed: rank 0 writes every file
                continue
            append_jsonl(out / "solves.jsonl", [r.to_dict() for r in records])
            append_jsonl(out / "events.jsonl", events)
            append_jsonl(out / "steps.jsonl", [row])
            if state.step % config.checkpoint_every == 0 or state.step == total_steps:
                save_checkpoint(out / "checkpoint.pt", model, optimizer, ledger, state)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(_postfix(row, state, task), refresh=False)
            if on_step is not None:
                on_step(row)
    except BaseException as exc:
        if status == "completed":
            status = f"interrupted at step {state.step}: {type(exc).__name__}"
        if not group.writer:
            raise
        if checkpoint is None and state.step == 0:  # nothing finished: leave --out reusable
            discard_unstarted_run(out, created)
            raise
        write_json_atomic(out / "summary.json",
                          _summary(config, task, ledger, state, status, newton_blocks, rates))
        raise
    finally:
        if bar is not None:
            bar.close()
    summary = _summary(config, task, ledger, state, status, newton_blocks, rates)
    if group.writer:
        write_json_atomic(out / "summary.json", summary)
    return summary


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _postfix(row: dict[str, Any], state: RunState, task: Task) -> dict[str, str]:
    metric = (state.last_eval or {}).get(f"test_{task.metric_name}")
    post = {"loss": f"{row['loss']:.4f}"}
    if metric is not None:
        post[task.metric_name] = f"{metric:.4g}"
    post["measured"] = f"{row['measured_seconds']:.1f}s"
    post["modeled_q"] = f"{row['modeled_quantum_seconds']:.2e}s"
    return post
