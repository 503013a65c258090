"""The optimizers a run can use, by name: first-order baselines and the Newton family.

Adding an optimizer is one entry here: its default learning rate and how to build it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from qnewton.accounting import Ledger
from qnewton.optimizer import QNewton
from qnewton.quantum import get_profile
from qnewton.registry import Registry
from qnewton.solvers import MachineRates

#: The paper mode's (``step_rule="fixed"``) learning rate when none is given, with
#: ``reg=5e-3, clip=0.1``: tuned on digits before the adaptive rule existed (with the paper's
#: λ = reg·max|F| the empirical-Fisher step grows like 1/‖g‖ as the gradient shrinks, and
#: without the element-wise clip late steps diverged). ``qnewton reproduce`` runs it.
PAPER_MODE_LR = 0.3

@dataclass(frozen=True)
class OptimizerSpec:
    """A named optimizer.

    Attributes:
        name: registry name (``--optimizer``).
        default_lr: learning rate when none is given.
        newton: whether it is a :class:`~qnewton.QNewton` (its settings, hardware profile and
            solve records apply).
        policy: the Newton family's routing policy (``None`` for first-order optimizers).
        solvers: the classical solvers it may use (``None``: the scheduler's default).
        build_first_order: for first-order optimizers, ``(params, lr) -> torch.optim.Optimizer``.
        fixed_lr: the Newton family's learning rate under ``step_rule="fixed"`` when none is
            given (the paper mode's preset).
    """

    name: str
    default_lr: float
    newton: bool = False
    policy: str | None = None
    solvers: tuple[str, ...] | None = None
    build_first_order: Callable[[Any, float], torch.optim.Optimizer] | None = None
    fixed_lr: float = PAPER_MODE_LR

    def build(self, config: Any, model: torch.nn.Module, rates: MachineRates,
              ledger: Ledger) -> torch.optim.Optimizer:
        """The optimizer for ``model`` with the settings of ``config`` (a
        :class:`~qnewton.training.TrainConfig`, which imports this registry)."""
        lr = config.learning_rate
        if not self.newton:
            return self.build_first_order(model.parameters(), lr)
        overrides = {} if config.gate_time is None else {"gate_time_s": config.gate_time}
        options = config.newton_options()
        options["hardware"] = get_profile(config.hardware, **overrides)
        options["policy"] = options["policy"] or self.policy
        solvers = options.pop("classical_solvers") or self.solvers
        if solvers:
            options["classical_solvers"] = solvers
        return QNewton(model.named_parameters(), lr=lr, rates=rates, ledger=ledger,
                       seed=config.seed, **options)


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")
OPTIMIZERS.register("sgd", OptimizerSpec(
    "sgd", 0.1, build_first_order=lambda params, lr: torch.optim.SGD(params, lr=lr)))
OPTIMIZERS.register("momentum", OptimizerSpec(
    "momentum", 0.05,
    build_first_order=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)))
OPTIMIZERS.register("adam", OptimizerSpec(
    "adam", 3e-3, build_first_order=lambda params, lr: torch.optim.Adam(params, lr=lr)))
# The Newton family's default lr is QNewton's (1.0: under the adaptive step rule it scales the
# directions before the step size α ∈ (0, 1] is chosen); the fixed rule's preset is fixed_lr.
OPTIMIZERS.register("newton", OptimizerSpec("newton", 1.0, newton=True, policy="classical"))
OPTIMIZERS.register("newton-inverse", OptimizerSpec(
    "newton-inverse", 1.0, newton=True, policy="classical", solvers=("inverse",)))
OPTIMIZERS.register("qnewton", OptimizerSpec("qnewton", 1.0, newton=True, policy="cost"))
OPTIMIZERS.register("quantum", OptimizerSpec("quantum", 1.0, newton=True, policy="quantum"))
