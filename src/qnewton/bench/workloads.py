"""The models, data and optimizers of the user-facing cases (``step-cost``, ``time-to-target``,
``width-scaling``): what ``qnewton train`` would run, measured against first-order baselines.

:data:`QNEWTON_SETTINGS` is the **one place** that says which QNewton the cases measure: the
CLI's (:class:`~qnewton.training.TrainConfig` defaults, through the optimizer registry), plus
whatever is set there. When the defaults change (damping, step size, curvature batches), the
cases follow; put an override there only to measure something other than what a user gets.

Workloads (``WORKLOADS``): ``digits-mlp`` (the ``digits`` task's model and batch), ``mnist-mlp``
(the ``mnist`` task's model), ``digits-cnn`` (:class:`DigitsCNN` on the 8×8 images),
``digits-gru`` (:class:`DigitsGRU` reading the 8 rows of 8 pixels as a sequence),
``digits-transformer`` (:class:`DigitsTransformer`, the rows as tokens) and ``digits-bn-cnn``
(:class:`DigitsBatchNormCNN`, BatchNorm in training mode and dropout).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qnewton.accounting import Ledger
from qnewton.curvature import CURVATURES
from qnewton.optimizer import QNewton
from qnewton.solvers import MachineRates
from qnewton.tasks import TASKS, TaskConfig, load_task
from qnewton.training import TrainConfig
from qnewton.training.optimizers import OPTIMIZERS

#: Overrides of the :class:`TrainConfig` defaults for the measured QNewton (empty: the CLI's
#: ``qnewton train --optimizer qnewton`` settings). The one place to change them.
QNEWTON_SETTINGS: dict[str, Any] = {}


def qnewton_config(curvature: str | None = None, **fields: Any) -> TrainConfig:
    """The run settings of the measured QNewton (``curvature`` None: the default kind)."""
    extra = {} if curvature is None else {"curvature": curvature}
    return TrainConfig(**{"optimizer": "qnewton", **QNEWTON_SETTINGS, **extra, **fields})


def build_qnewton(model: nn.Module, rates: MachineRates, curvature: str | None = None,
                  seed: int = 0) -> QNewton:
    """QNewton on ``model`` exactly as ``qnewton train`` builds it (its own fresh ledger)."""
    config = qnewton_config(curvature, seed=seed)
    return OPTIMIZERS[config.optimizer].build(config, model, rates, Ledger())


def adam_lr() -> float:
    """The CLI's default Adam learning rate."""
    return OPTIMIZERS["adam"].default_lr


class DigitsCNN(nn.Module):
    """Conv 1→8 3×3, conv 8→16 3×3 (tanh), linear 16·4·4 → 10, on 64 features seen as 8×8."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.fc = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv1(x.reshape(-1, 1, 8, 8)))
        h = torch.tanh(self.conv2(h))
        return self.fc(h.flatten(1))


class DigitsGRU(nn.Module):
    """GRU (hidden 32) over the 8 rows of 8 pixels, linear head on the last hidden state."""

    def __init__(self, hidden: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(8, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x.reshape(-1, 8, 8))
        return self.fc(h[-1])


class DigitsTransformer(nn.Module):
    """A transformer classifier: the 8 rows of 8 pixels as tokens, linear 8→16, one
    ``nn.TransformerEncoderLayer`` (2 heads, feed-forward 32, dropout 0.1, batch first), mean
    over tokens, linear 16 → 10."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.encoder = nn.TransformerEncoderLayer(width, 2, dim_feedforward=2 * width,
                                                  batch_first=True)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encoder(self.embed(x.reshape(-1, 8, 8))).mean(dim=1))


class DigitsBatchNormCNN(nn.Module):
    """Conv 1→8 3×3, BatchNorm2d, ReLU, conv 8→16 3×3, BatchNorm2d, ReLU, dropout 0.1, linear
    256 → 10 (BatchNorm in training mode while training)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x.reshape(-1, 1, 8, 8))))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.fc(self.drop(h.flatten(1)))


@dataclass
class Workload:
    """A model factory with its data: ``make_model()`` gives a fresh copy (same seed, same
    initial weights) for every optimizer measured side by side."""

    name: str
    make_model: Callable[[], nn.Module]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    batch: int
    description: str

    def batch_indices(self, step: int, seed: int, batch: int | None = None) -> torch.Tensor:
        """The ``step``-th mini-batch of a seeded epoch order (same for every optimizer)."""
        b = batch or self.batch
        n = self.x_train.shape[0]
        per_epoch = max(1, n // b)
        epoch, k = divmod(step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        return order[k * b:(k + 1) * b]

    def accuracy(self, model: nn.Module) -> float:
        """Test accuracy (no gradients)."""
        with torch.no_grad():
            return float((model(self.x_test).argmax(1) == self.y_test).double().mean())


def _seeded(seed: int, factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory()

    return make


#: Workload name → (task, model factory or None for the task's own model, description).
WORKLOADS: dict[str, tuple[str, Callable[[], nn.Module] | None, str]] = {
    "digits-mlp": ("digits", None, "digits task MLP 64->h->h->10"),
    "mnist-mlp": ("mnist", None, "mnist task MLP 784->h->h->10"),
    "digits-cnn": ("digits", DigitsCNN, "CNN conv1->8 3x3, conv8->16 3x3, linear 256->10"),
    "digits-gru": ("digits", DigitsGRU, "GRU 8 rows x 8 pixels, hidden 32, linear 32->10"),
    "digits-transformer": ("digits", DigitsTransformer, "transformer encoder layer (d 16, "
                           "2 heads, ff 32, dropout 0.1) on 8 rows x 8 pixels, linear 16->10"),
    "digits-bn-cnn": ("digits", DigitsBatchNormCNN, "CNN conv->BN->ReLU x2, dropout, "
                      "linear 256->10 (BatchNorm in training mode)"),
}


def load_workload(name: str, seed: int = 0, *, batch: int | None = None, tiny: bool = False,
                  hidden: int | None = None) -> Workload:
    """The workload ``name`` of :data:`WORKLOADS` (``batch`` None: the task's default)."""
    task_name, factory, text = WORKLOADS[name]
    config = TaskConfig(name=task_name, seed=seed, tiny=tiny, hidden=hidden)
    task = load_task(config)
    if factory is None:
        def factory() -> nn.Module:
            return load_task(config).model

    b = batch or TASKS[task_name].default_batch_size
    b = min(b, task.x_train.shape[0])
    params = sum(p.numel() for p in _seeded(seed, factory)().parameters())
    return Workload(name, _seeded(seed, factory), task.x_train, task.y_train, task.x_test,
                    task.y_test, b, f"{text} ({params} parameters), batch {b}"
                    + (" (tiny data)" if tiny else ""))


def closure_for(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                curvature: str | None = None) -> Callable[[], Any]:
    """The closure QNewton takes: per-sample losses, with the outputs for the GGN kinds."""
    with_outputs = CURVATURES[qnewton_config(curvature).curvature].needs_outputs

    def closure() -> Any:
        out = model(x)
        losses = F.cross_entropy(out, y, reduction="none")
        return (losses, out) if with_outputs else losses

    return closure


def first_order_step(optimizer: torch.optim.Optimizer, model: nn.Module, x: torch.Tensor,
                     y: torch.Tensor) -> float:
    """One step of a first-order optimizer on the mean cross-entropy; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
