"""Everything that determines a training run, validated once (saved as ``config.json``).

The run's own settings are :data:`RUN_FIELDS`; the method's are the options of
:data:`qnewton.options.OPTIONS` that have a flag, derived from that one declaration.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qnewton.conditioning import ConditioningConfig
from qnewton.options import OPTIONS
from qnewton.quantum import HARDWARE_PROFILES
from qnewton.tasks import TASKS, TaskConfig
from qnewton.training.optimizers import OPTIMIZERS
from qnewton.validation import check_int, check_optional, check_positive

#: The run's own settings (name, type, default), before the method's options.
RUN_FIELDS: list[tuple[str, Any, Any]] = [
    ("task", str, "digits"),
    ("optimizer", str, "qnewton"),
    ("epochs", int, 10),
    ("batch_size", int | None, None),
    ("lr", float | None, None),
    ("seed", int, 0),
    ("hidden", int | None, None),
    ("tiny", bool, False),
    ("max_steps", int | None, None),
    ("eval_every", int, 0),
    ("gate_time", float | None, None),
    ("checkpoint_every", int, 1),
]
#: The method's options a run stores (those with a flag), :data:`qnewton.options.OPTIONS`.
RUN_OPTIONS = tuple(o for o in OPTIONS if o.flag is not None)


class _TrainConfigBase:
    """Everything that determines a training run.

    ``lr=None`` takes the optimizer's default, ``batch_size=None`` the task's. ``max_steps``
    stops early (quick runs); ``eval_every=0`` evaluates on the test set at the end of every
    epoch; ``gate_time`` overrides the hardware profile's gate time (seconds). The method's
    settings are :data:`RUN_OPTIONS` (ignored by first-order optimizers); ``policy=None`` and
    ``solvers=None`` take the optimizer's own.
    """

    def __post_init__(self) -> None:
        TASKS.check(self.task)
        OPTIMIZERS.check(self.optimizer)
        for option in RUN_OPTIONS:
            value = getattr(self, option.field)
            if option.check is not None:
                checked = option.check(value)
                if isinstance(checked, tuple):  # a normalized list (solvers)
                    object.__setattr__(self, option.field, checked)
        HARDWARE_PROFILES.check(self.hardware)
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
        ConditioningConfig(reg_scheme=self.reg_scheme, reg=self.reg or 0.0,
                           prune_ratio=self.prune_ratio, prune_count=self.prune_count)

    def newton_options(self) -> dict[str, Any]:
        """The optimizer keywords of this run's method settings (``None`` for ``policy`` and
        ``solvers`` left to the optimizer's own)."""
        return {o.name: (o.to_optimizer or (lambda v: v))(getattr(self, o.field))
                for o in RUN_OPTIONS}

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
        # (a run written before batch_norm and ggn_max_outputs existed took the coupled
        # BatchNorm rows and always the exact GGN)
        added = {"curvature_batch": None, "curvature_every": 1, "curvature_dtype": "float64",
                 "step_rule": "fixed", "batch_norm": "exact", "ggn_max_outputs": None}
        return {**{k: v for k, v in added.items() if k not in data}, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**data)


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(name, kind, dataclasses.field(default=default)) for name, kind, default in RUN_FIELDS]
    + [(o.field, Any, dataclasses.field(default=o.train_default)) for o in RUN_OPTIONS],
    bases=(_TrainConfigBase,), frozen=True)
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = _TrainConfigBase.__doc__
