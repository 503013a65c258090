"""Everything that determines a training run, validated once (saved as ``config.json``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from qnewton.conditioning import REG_SCHEMES, ConditioningConfig
from qnewton.curvature import CURVATURES, GROUPINGS
from qnewton.estimation import KAPPA_METHODS
from qnewton.quantum import DEFAULT_HARDWARE, HARDWARE_PROFILES, QLSA_MODELS, READOUT_MODES
from qnewton.quantum.backends import QLSA_BACKENDS
from qnewton.scheduling import POLICIES
from qnewton.solvers import SOLVERS
from qnewton.stepping import check_step_rule
from qnewton.tasks import TASKS, TaskConfig
from qnewton.training.optimizers import CURVATURE_DTYPES, OPTIMIZERS
from qnewton.validation import (
    check_choice,
    check_int,
    check_open_unit,
    check_optional,
    check_positive,
    check_real,
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    ``lr=None`` takes the optimizer's default, ``batch_size=None`` the task's. ``max_steps``
    stops early (quick runs); ``eval_every=0`` evaluates on the test set at the end of every
    epoch. Newton-family settings (curvature ... exact_kappa_max_n) are ignored by first-order
    optimizers; ``policy=None`` and ``solvers=None`` take the optimizer's own.
    ``curvature_batch=None`` builds the curvature from every sample of the mini-batch;
    ``curvature_every=1`` builds it at every step; ``curvature_dtype`` stores curvature factors
    in float64 (default) or in the model's dtype (``"model"``: less memory, slower products;
    docs/method.md §4.7).
    """

    task: str = "digits"
    optimizer: str = "qnewton"
    hardware: str = DEFAULT_HARDWARE
    epochs: int = 10
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    hidden: int | None = None
    tiny: bool = False
    max_steps: int | None = None
    eval_every: int = 0
    curvature: str = "fisher"
    grouping: str = "tensor"
    reg_scheme: str = "max-entry"
    step_rule: str = "adaptive"
    damping: float = 1.0
    reg: float = 1e-3
    prune_ratio: float | None = None
    prune_count: int | None = None
    policy: str | None = None
    solvers: tuple[str, ...] | None = None
    qlsa: str = "jennings"
    qlsa_backend: str = "emulated"
    readout: str | None = None
    gate_time: float | None = None
    eps: float = 1e-2
    kappa_threshold: float = 1e4
    kappa_method: str = "auto"
    alpha: float | None = None
    shots: int | None = None
    momentum: float = 0.0
    clip: float | None = None
    max_block_bytes: int = 1024**3
    curvature_batch: int | None = None
    curvature_every: int = 1
    curvature_dtype: str = "float64"
    exact_kappa_max_n: int = 0
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        TASKS.check(self.task)
        OPTIMIZERS.check(self.optimizer)
        HARDWARE_PROFILES.check(self.hardware)
        QLSA_MODELS.check(self.qlsa)
        QLSA_BACKENDS.check(self.qlsa_backend)
        CURVATURES.check(self.curvature)
        GROUPINGS.check(self.grouping)
        REG_SCHEMES.check(self.reg_scheme)
        KAPPA_METHODS.check(self.kappa_method)
        if self.policy is not None:
            POLICIES.check(self.policy)
        if self.solvers is not None:
            solvers = tuple(self.solvers)
            if not solvers:
                raise ValueError("solvers must name at least one classical solver or be None")
            for name in solvers:
                check_choice("solvers", name, SOLVERS)
            object.__setattr__(self, "solvers", solvers)
        if self.readout is not None:
            check_choice("readout", self.readout, READOUT_MODES)
        check_optional(check_int, "batch_size", self.batch_size, 1)
        check_int("epochs", self.epochs, 1)
        check_int("checkpoint_every", self.checkpoint_every, 1)
        check_optional(check_int, "max_steps", self.max_steps, 1)
        check_int("eval_every", self.eval_every, 0)
        check_optional(check_positive, "lr", self.lr)
        check_optional(check_positive, "gate_time", self.gate_time)
        # the task's and the conditioning's own checks (seed range, hidden size, regularization,
        # pruning), so that a run is refused before it starts rather than at its first step
        self.task_config()
        ConditioningConfig(reg_scheme=self.reg_scheme, reg=self.reg,
                           prune_ratio=self.prune_ratio, prune_count=self.prune_count)
        check_open_unit("eps", self.eps)
        check_real("kappa_threshold", self.kappa_threshold, low=1.0)
        check_optional(check_positive, "alpha", self.alpha)
        check_optional(check_int, "shots", self.shots, 1)
        check_real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_optional(check_positive, "clip", self.clip)
        check_step_rule(self.step_rule, self.damping)
        check_int("max_block_bytes", self.max_block_bytes, 1)
        check_optional(check_int, "curvature_batch", self.curvature_batch, 1)
        check_int("curvature_every", self.curvature_every, 1)
        check_choice("curvature_dtype", self.curvature_dtype, CURVATURE_DTYPES)
        check_int("exact_kappa_max_n", self.exact_kappa_max_n, 0)

    def task_config(self) -> TaskConfig:
        """The task this run trains on."""
        return TaskConfig(name=self.task, hidden=self.hidden, seed=self.seed, tiny=self.tiny)

    @property
    def learning_rate(self) -> float:
        """``lr``, else the optimizer's default (for the Newton family under
        ``step_rule="fixed"``: its paper-mode preset, see :class:`OptimizerSpec`)."""
        if self.lr is not None:
            return self.lr
        spec = OPTIMIZERS[self.optimizer]
        if spec.newton and self.step_rule == "fixed":
            return spec.fixed_lr
        return spec.default_lr

    @property
    def batch(self) -> int:
        """Mini-batch size: ``batch_size``, or the task's default."""
        return self.batch_size if self.batch_size is not None else (
            TASKS[self.task].default_batch_size)

    @property
    def is_newton(self) -> bool:
        return OPTIMIZERS[self.optimizer].newton

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["solvers"] is not None:
            data["solvers"] = list(data["solvers"])
        return data

    @classmethod
    def with_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (a saved ``to_dict``) with the settings added since it was written filled in
        with their defaults, which reproduce the behaviour of the code that wrote it."""
        added = {"curvature_batch": None, "curvature_every": 1, "curvature_dtype": "float64",
                 "step_rule": "fixed"}
        return {**{k: v for k, v in added.items() if k not in data}, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**data)
