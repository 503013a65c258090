"""What every task shares: its registry entry, its configuration, the built task and its loss.

A task is registered as a :class:`TaskSpec` in :data:`TASKS`; :func:`load_task` looks the name
of a :class:`TaskConfig` up there and calls the spec's loader, which returns a :class:`Task`
(data split, tensors and a freshly initialized model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qnewton.registry import Registry
from qnewton.validation import check_choice, check_int, check_open_unit, check_optional

CORPORA = ("auto", "fortunes", "pydoc")
TASK_KINDS = ("classification", "lm")

#: Rows of ``x`` per forward pass in :meth:`Task.evaluate` (no gradients: memory is the limit).
EVAL_BATCH_SIZE = 1024


@dataclass(frozen=True)
class TaskSpec:
    """The registry entry of one task.

    Attributes:
        name: the name users give (``--task``); the key of the entry in :data:`TASKS`.
        load: builds the task from a :class:`TaskConfig` whose ``name`` is this one.
        default_batch_size: the training mini-batch size when none is given. Per-sample
            gradients of layers other than plain linear ones (embeddings, LayerNorm) take one
            batched backward per sample, so their cost grows like B²: Transformer tasks need
            smaller batches than MLP tasks.
        summary: one line for help texts: the data and the model.
        hidden_multiple_of: ``TaskConfig.hidden`` must be a multiple of this (the number of
            attention heads the model dimension is split across; 1 for the MLPs).
    """

    name: str
    load: Callable[[TaskConfig], Task]
    default_batch_size: int
    summary: str
    hidden_multiple_of: int = 1

    def __post_init__(self) -> None:
        check_int("default_batch_size", self.default_batch_size, minimum=1)
        check_int("hidden_multiple_of", self.hidden_multiple_of, minimum=1)


#: The tasks, in the order users see them; filled by :mod:`qnewton.tasks` from the task modules.
TASKS: Registry[TaskSpec] = Registry("task")


@dataclass(frozen=True)
class TaskConfig:
    """Which task to build.

    Attributes:
        name: one of :data:`TASKS`.
        hidden: MLP width (``digits``/``mnist``) or model dimension (``text``/``lm``, a multiple
            of the task's ``hidden_multiple_of``: 2 heads); ``None`` → the task default (16 for
            the MLPs, 64 for the Transformers; 8 / 16 with ``tiny``).
        seed: seeds the split, any subsampling and the model initialization; 0 ≤ seed < 2**32.
        tiny: a much smaller configuration (a few hundred samples, smaller model) for tests.
        test_fraction: fraction of the samples (windows for ``lm``) held out, in (0, 1).
        corpus: ``lm`` only (ignored by the other tasks): ``"fortunes"``, ``"pydoc"``, or
            ``"auto"`` (fortunes if the package is installed, else pydoc).
    """

    name: str = "digits"
    hidden: int | None = None
    seed: int = 0
    tiny: bool = False
    test_fraction: float = 0.2
    corpus: str = "auto"

    def __post_init__(self) -> None:
        spec = TASKS[self.name]
        # store the checked values (plain int/float), so equal configs compare and hash equal
        hidden = check_optional(check_int, "hidden", self.hidden, minimum=1)
        if hidden is not None and hidden % spec.hidden_multiple_of:
            raise ValueError(
                f"hidden must be a multiple of {spec.hidden_multiple_of} for task {self.name!r} "
                f"(its attention heads split the model dimension), got {hidden}"
            )
        object.__setattr__(self, "hidden", hidden)
        object.__setattr__(self, "seed", check_int("seed", self.seed, 0, 2**32 - 1))
        if not isinstance(self.tiny, bool):
            raise ValueError(f"tiny must be True or False, got {self.tiny!r}")
        object.__setattr__(
            self, "test_fraction", check_open_unit("test_fraction", self.test_fraction)
        )
        check_choice("corpus", self.corpus, CORPORA)


@dataclass
class Task:
    """A data set with its split and a freshly initialized model.

    Attributes:
        name: the task name (one of :data:`TASKS`).
        kind: ``"classification"`` or ``"lm"``.
        model: the model, initialized deterministically from the seed (float32, CPU).
        x_train, y_train, x_test, y_test: classification: features ``(N, F)`` float32 or token
            ids ``(N, L)`` int64 (``text``), labels ``(N,)`` int64; lm: inputs and targets
            ``(N, T)`` int64, targets = inputs shifted by one.
        num_classes: number of classes, or the vocabulary size for ``lm``.
        description: data set, sizes, model architecture, parameter count and
            ``param_sizes = {name: numel}`` (JSON-serializable).
    """

    name: str
    kind: str
    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    description: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, TASK_KINDS)

    @property
    def metric_name(self) -> str:
        """``"accuracy"`` (higher is better) or ``"perplexity"`` (lower is better)."""
        return "accuracy" if self.kind == "classification" else "perplexity"

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger :attr:`metric_name` value is better."""
        return self.kind == "classification"

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample cross-entropy losses ``(S,)`` and outputs ``(S, C)``.

        Classification: ``S`` = batch size, ``C`` = classes. lm: ``S = B·T`` tokens (row
        ``b·T + t`` is position ``t`` of window ``b``), ``C`` = vocabulary size. The objective
        is ``losses.mean()`` and loss ``s`` depends only on output row ``s``.
        """
        out = model(x)
        out = out.reshape(-1, out.shape[-1])
        return F.cross_entropy(out, y.reshape(-1), reduction="none"), out

    def evaluate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = EVAL_BATCH_SIZE,
    ) -> dict[str, float]:
        """Mean loss and the metric over ``(x, y)``, in batches of ``batch_size`` rows of ``x``,
        under ``torch.no_grad``: ``{"loss", "accuracy"}`` or ``{"loss", "perplexity"}`` (the
        exponential of the mean per-token loss)."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if x.shape[0] == 0:
            raise ValueError("evaluate needs at least one sample, got an empty x")
        total_loss = 0.0
        correct = 0
        count = 0
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                losses, out = self.losses(model, x[i : i + batch_size], y[i : i + batch_size])
                total_loss += float(losses.double().sum())
                count += losses.shape[0]
                if self.kind == "classification":
                    correct += int((out.argmax(dim=1) == y[i : i + batch_size]).sum())
        loss = total_loss / count
        if self.kind == "classification":
            return {"loss": loss, "accuracy": correct / count}
        return {"loss": loss, "perplexity": math.exp(loss)}


def load_task(config: TaskConfig) -> Task:
    """Build the task ``config`` names: data split, tensors and a freshly initialized model."""
    if not isinstance(config, TaskConfig):
        raise TypeError(f"load_task expects a TaskConfig, got {type(config).__name__}")
    return TASKS[config.name].load(config)


def init_model(seed: int, factory: Callable[[], nn.Module]) -> nn.Module:
    """Build ``factory()`` with the torch RNG seeded by ``seed``, leaving the global RNG alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def architecture(model: nn.Module) -> dict[str, Any]:
    """``num_params`` and ``param_sizes = {name: numel}`` for a task's description."""
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    return {"num_params": sum(sizes.values()), "param_sizes": sizes}
