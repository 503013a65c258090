"""The optimizers a run can use, by name: first-order baselines and the Newton family.

Adding an optimizer is one entry here: its default learning rate and how to build it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from qnewton.optimizer import QNewton
from qnewton.quantum import get_profile
from qnewton.registry import Registry

if TYPE_CHECKING:
    from qnewton.accounting import Ledger
    from qnewton.solvers import MachineRates
    from qnewton.training.config import TrainConfig


#: The paper mode's (``step_rule="fixed"``) learning rate when none is given, with
#: ``reg=5e-3, clip=0.1``: tuned on digits before the adaptive rule existed (with the paper's
#: λ = reg·max|F| the empirical-Fisher step grows like 1/‖g‖ as the gradient shrinks, and
#: without the element-wise clip late steps diverged). ``qnewton reproduce`` runs it.
PAPER_MODE_LR = 0.3

#: ``TrainConfig.curvature_dtype`` → ``QNewton(curvature_dtype=...)``: factors stored in the
#: model's dtype (``None``), or in float64 (the storage of runs written before the option).
CURVATURE_DTYPES: dict[str, torch.dtype | None] = {"model": None, "float64": torch.float64}


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

    def build(self, config: TrainConfig, model: torch.nn.Module, rates: MachineRates,
              ledger: Ledger) -> torch.optim.Optimizer:
        """The optimizer for ``model`` with the run's settings."""
        lr = config.learning_rate
        if not self.newton:
            return self.build_first_order(model.parameters(), lr)
        overrides = {} if config.gate_time is None else {"gate_time_s": config.gate_time}
        solvers = config.solvers or self.solvers
        return QNewton(
            model.named_parameters(),
            lr=lr,
            step_rule=config.step_rule,
            damping=config.damping,
            curvature=config.curvature,
            grouping=config.grouping,
            reg_scheme=config.reg_scheme,
            reg=config.reg,
            prune_ratio=config.prune_ratio,
            prune_count=config.prune_count,
            momentum=config.momentum,
            clip=config.clip,
            policy=config.policy or self.policy,
            qlsa=config.qlsa,
            qlsa_backend=config.qlsa_backend,
            hardware=get_profile(config.hardware, **overrides),
            readout=config.readout,
            eps=config.eps,
            kappa_threshold=config.kappa_threshold,
            kappa_method=config.kappa_method,
            alpha=config.alpha,
            shots=config.shots,
            **({"classical_solvers": solvers} if solvers else {}),
            max_block_bytes=config.max_block_bytes,
            curvature_batch=config.curvature_batch,
            curvature_every=config.curvature_every,
            curvature_dtype=CURVATURE_DTYPES[config.curvature_dtype],
            exact_kappa_max_n=config.exact_kappa_max_n,
            rates=rates,
            ledger=ledger,
            seed=config.seed,
        )


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
