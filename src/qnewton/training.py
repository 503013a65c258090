"""Training runs: one task, one optimizer, files a researcher can read, resume and compare.

A run directory holds

* ``config.json``   the :class:`TrainConfig`, the task description, the machine rates used;
* ``steps.jsonl``   one row per optimizer step (loss, cumulative measured / modeled / total
  seconds, solves) — rows with evaluation metrics where the test set was evaluated;
* ``solves.jsonl``  one :class:`~qnewton.accounting.SolveRecord` per block solve;
* ``events.jsonl``  everything that was handled (fallbacks, retries, skipped blocks);
* ``summary.json``  final metrics and time totals (``status`` says whether the run completed);
* ``checkpoint.pt`` model, optimizer and ledger state after the last completed step.

Times: ``measured_seconds`` is wall clock of the training work on this machine (evaluation and
diagnostics excluded), ``modeled_quantum_seconds`` is the cost model's time for the quantum solves
on the named hardware profile, and ``total_seconds = measured − emulation + modeled`` (the time
spent emulating quantum solves classically is replaced by their modeled time).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qnewton.accounting import Ledger
from qnewton.calibration import calibrate
from qnewton.quantum import HARDWARE_PROFILES, QLSA_MODELS, get_profile
from qnewton.solvers import MachineRates
from qnewton.optimizer import QNewton
from qnewton.tasks import TASKS, Task, TaskConfig, load_task

FIRST_ORDER = ("sgd", "momentum", "adam")
NEWTON_POLICIES = {
    "newton": "classical",
    "newton-inverse": "classical",
    "qnewton": "cost",
    "quantum": "quantum",
}
OPTIMIZERS = FIRST_ORDER + tuple(NEWTON_POLICIES)
# Newton-family defaults were tuned on digits (see README): with the paper's relative
# regularization λ = reg·max|F|, the empirical-Fisher step grows like 1/‖g‖ as the gradient
# shrinks, so an element-wise clip (an option of the code release) keeps late steps bounded.
DEFAULT_LR = {
    "sgd": 0.1,
    "momentum": 0.05,
    "adam": 3e-3,
    "newton": 0.3,
    "newton-inverse": 0.3,
    "qnewton": 0.3,
    "quantum": 0.3,
}
# Per-task default batch sizes. Per-sample gradients of layers other than plain linear ones
# (embeddings, LayerNorm) take one batched backward per sample, so their cost grows like B²:
# the Transformer tasks use smaller batches.
DEFAULT_BATCH = {"digits": 128, "mnist": 128, "text": 32, "lm": 16}
RUN_FILES = ("config.json", "steps.jsonl", "solves.jsonl", "events.jsonl", "summary.json",
             "checkpoint.pt")


class TrainingError(RuntimeError):
    """A run could not start or had to stop (bad directory, non-finite loss, ...)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (saved as ``config.json``).

    ``lr=None`` takes the optimizer's default from :data:`DEFAULT_LR`, ``batch_size=None`` the
    task's from :data:`DEFAULT_BATCH`. ``max_steps`` stops early
    (quick runs); ``eval_every=0`` evaluates on the test set at the end of every epoch.
    Newton-family settings (curvature ... exact_kappa_max_n) are ignored by first-order optimizers.
    """

    task: str = "digits"
    optimizer: str = "qnewton"
    hardware: str = "paper"
    epochs: int = 10
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    hidden: int | None = None
    tiny: bool = False
    max_steps: int | None = None
    eval_every: int = 0
    curvature: str = "fisher"
    reg_scheme: str = "max-entry"
    reg: float = 5e-3
    prune_ratio: float | None = None
    qlsa: str = "jennings"
    readout: str | None = None
    gate_time: float | None = None
    eps: float = 1e-2
    kappa_threshold: float = 1e4
    momentum: float = 0.0
    clip: float | None = 0.1
    max_block_bytes: int = 1024**3
    exact_kappa_max_n: int = 300
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        _allowed("task", self.task, TASKS)
        _allowed("optimizer", self.optimizer, OPTIMIZERS)
        _allowed("hardware", self.hardware, tuple(HARDWARE_PROFILES))
        _allowed("qlsa", self.qlsa, tuple(QLSA_MODELS))
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("epochs", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0: every epoch), got {self.eval_every}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.gate_time is not None and not self.gate_time > 0:
            raise ValueError(f"gate_time must be > 0 seconds, got {self.gate_time}")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def batch(self) -> int:
        """Mini-batch size: ``batch_size``, or the task's default from :data:`DEFAULT_BATCH`."""
        return self.batch_size if self.batch_size is not None else DEFAULT_BATCH[self.task]

    @property
    def is_newton(self) -> bool:
        return self.optimizer in NEWTON_POLICIES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**data)


def _allowed(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


# -- files ------------------------------------------------------------------------------------
def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (run killed mid-write) is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only rows with ``step <= last_step`` (what the checkpoint covers)."""
    rows = [r for r in read_jsonl(path) if r.get("step", -1) <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def _append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    if rows:
        with path.open("a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, default=_json_default) + "\n" for r in rows))
            fh.flush()


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


# -- optimizers -------------------------------------------------------------------------------
def build_optimizer(
    config: TrainConfig, model: torch.nn.Module, rates: MachineRates, ledger: Ledger
) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` (Newton family: :class:`QNewton`)."""
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if config.optimizer == "momentum":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    overrides = {} if config.gate_time is None else {"gate_time_s": config.gate_time}
    solvers = ("inverse",) if config.optimizer == "newton-inverse" else ("cholesky", "cg",
                                                                          "woodbury")
    return QNewton(
        model.named_parameters(),
        lr=lr,
        curvature=config.curvature,
        reg_scheme=config.reg_scheme,
        reg=config.reg,
        prune_ratio=config.prune_ratio,
        momentum=config.momentum,
        clip=config.clip,
        policy=NEWTON_POLICIES[config.optimizer],
        qlsa=config.qlsa,
        hardware=get_profile(config.hardware, **overrides),
        readout=config.readout,
        eps=config.eps,
        kappa_threshold=config.kappa_threshold,
        classical_solvers=solvers,
        max_block_bytes=config.max_block_bytes,
        exact_kappa_max_n=config.exact_kappa_max_n,
        rates=rates,
        ledger=ledger,
        seed=config.seed,
    )


def _first_order_step(
    optimizer: torch.optim.Optimizer, closure: Callable[[], Any], ledger: Ledger
) -> torch.Tensor:
    with ledger.phase("forward_backward"):
        optimizer.zero_grad(set_to_none=True)
        out = closure()
        losses = out[0] if isinstance(out, tuple) else out
        loss = losses.mean()
        if bool(torch.isfinite(loss)):
            loss.backward()
    if bool(torch.isfinite(loss)):
        with ledger.phase("update"):
            optimizer.step()
    return loss.detach()


# -- the run ----------------------------------------------------------------------------------
@dataclass
class RunState:
    """Position in the run (saved in the checkpoint)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    last_eval: dict[str, float] | None = None


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
                              "total_seconds", "quantum_solves", "classical_solves")}


def _save_checkpoint(path: Path, model, optimizer, ledger: Ledger, state: RunState) -> None:
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


def _summary(config: TrainConfig, task: Task, ledger: Ledger, state: RunState, status: str,
             newton_blocks: dict[str, int]) -> dict[str, Any]:
    metrics = dict(state.last_eval or {})
    summary: dict[str, Any] = {
        "status": status,
        "task": config.task,
        "optimizer": config.optimizer,
        "hardware": config.hardware if config.is_newton else None,
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
        "modeled_quantum_seconds": f"modeled: QLSA cost model on the '{config.hardware}' profile",
        "total_seconds": "measured - emulation + modeled_quantum",
    }
    return summary


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a training run into ``out``; returns the summary.

    ``on_step`` is called with each step's row after it has been written (for tests and
    embedding); an exception it raises interrupts the run like Ctrl-C would.
    """
    out = Path(out)
    prepare_run_dir(out, resume)
    if resume:
        saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
        if saved["config"] != config.to_dict():
            diff = {k: (saved["config"].get(k), v) for k, v in config.to_dict().items()
                    if saved["config"].get(k) != v}
            raise TrainingError(f"--resume with different settings (saved, given): {diff}")
        rates = MachineRates.from_dict(saved["rates"])
    else:
        rates = calibrate()

    task = load_task(TaskConfig(name=config.task, hidden=config.hidden, seed=config.seed,
                                tiny=config.tiny))
    model = task.model
    ledger = Ledger()
    optimizer = build_optimizer(config, model, rates, ledger)
    state = RunState()
    newton_blocks: dict[str, int] = {}
    if resume:
        checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        ledger.load_state_dict(checkpoint["ledger"])
        state = RunState(**checkpoint["state"])
        # steps.jsonl counts completed steps (1-based); solves and events carry the 0-based
        # index of the step they belong to.
        _truncate_jsonl(out / "steps.jsonl", state.step)
        _truncate_jsonl(out / "solves.jsonl", state.step - 1)
        _truncate_jsonl(out / "events.jsonl", state.step - 1)
        for row in read_jsonl(out / "solves.jsonl"):
            if row["fallback"] is None:
                newton_blocks[row["block"]] = newton_blocks.get(row["block"], 0) + 1
    else:
        for name in ("steps.jsonl", "solves.jsonl", "events.jsonl"):
            (out / name).write_text("", encoding="utf-8")
        write_json_atomic(out / "config.json", {
            "config": config.to_dict(),
            "task": task.description,
            "rates": rates.to_dict(),
            "learning_rate": config.learning_rate,
            "torch_version": torch.__version__,
        })
        state.last_eval = _evaluate(task, model, ledger)
        _append_jsonl(out / "steps.jsonl", [{"step": 0, "epoch": 0, "initial": True,
                                             **state.last_eval, **_totals(ledger)}])

    n_train = task.x_train.shape[0]
    batch = config.batch
    batches_per_epoch = math.ceil(n_train / batch)
    total_steps = config.epochs * batches_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    bar = _progress_bar(progress, total_steps, state.step)
    status = "completed"
    try:
        while state.step < total_steps:
            order = _epoch_order(config, state.epoch, n_train)
            idx = order[state.batch * batch:(state.batch + 1) * batch]
            xb, yb = task.x_train[idx], task.y_train[idx]
            with_outputs = config.is_newton and config.curvature == "ggn"

            def closure(xb=xb, yb=yb, with_outputs=with_outputs):
                losses, outputs = task.losses(model, xb, yb)
                if with_outputs:
                    return losses, outputs
                if task.kind == "lm":
                    # One Fisher sample per sequence (its mean token loss): tokens of a sequence
                    # are coupled by attention, sequences are not. Same objective (equal lengths).
                    return losses.reshape(xb.shape[0], -1).mean(dim=1)
                return losses

            if config.is_newton:
                loss = optimizer.step(closure)
            else:
                loss = _first_order_step(optimizer, closure, ledger)
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
                                   "loss": float(loss), **_totals(ledger)}
            due = (config.eval_every and state.step % config.eval_every == 0) or (
                not config.eval_every and epoch_done)
            if due or state.step == total_steps:
                state.last_eval = _evaluate(task, model, ledger)
                row.update(state.last_eval)
            _append_jsonl(out / "solves.jsonl", [r.to_dict() for r in records])
            _append_jsonl(out / "events.jsonl", events)
            _append_jsonl(out / "steps.jsonl", [row])
            if state.step % config.checkpoint_every == 0 or state.step == total_steps:
                _save_checkpoint(out / "checkpoint.pt", model, optimizer, ledger, state)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(_postfix(row, state, task), refresh=False)
            if on_step is not None:
                on_step(row)
    except BaseException as exc:
        if status == "completed":
            status = f"interrupted at step {state.step}: {type(exc).__name__}"
        write_json_atomic(out / "summary.json",
                          _summary(config, task, ledger, state, status, newton_blocks))
        raise
    finally:
        if bar is not None:
            bar.close()
    summary = _summary(config, task, ledger, state, status, newton_blocks)
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
