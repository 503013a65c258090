"""Small models, data and our own Newton step, shared by several cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qnewton.conditioning import ConditioningConfig, condition
from qnewton.curvature import CurvatureConfig, blocks_from_module, compute_curvature
from qnewton.quantum import get_profile
from qnewton.scheduling import Scheduler, SchedulerConfig
from qnewton.solvers import MachineRates
from qnewton.system import LinearSystem


def mlp(d_in: int, hidden: int, d_out: int, dtype: torch.dtype, seed: int) -> nn.Sequential:
    """``d_in → hidden → hidden → d_out`` with tanh, initialized from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
        nn.Linear(hidden, d_out),
    ).to(dtype)


def random_data(
    n: int, d_in: int, classes: int, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` pixel-like inputs in [0, 1) and uniformly random labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d_in, generator=gen, dtype=torch.float64).to(dtype)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


def classical_scheduler(rates: MachineRates, seed: int = 0) -> Scheduler:
    """A scheduler that always takes the best predicted classical solver (``classical`` policy)."""
    return Scheduler(
        SchedulerConfig(hardware=get_profile("paper"), policy="classical"), rates=rates, seed=seed
    )


def ours_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, scheduler: Scheduler, eps: float
) -> tuple[list[torch.Tensor], list[str], list[LinearSystem]]:
    """Our Newton directions for every tensor: factor-form Fisher, conditioning (max-entry
    regularization ``eps``), then the scheduler's analysis, decision and solve."""
    losses = F.cross_entropy(model(x), y, reduction="none")
    blocks = blocks_from_module(model)
    curv = compute_curvature(losses, blocks, CurvatureConfig(kind="fisher", dtype=torch.float64))
    cfg = ConditioningConfig(reg_scheme="max-entry", reg=eps)
    directions, solvers, systems = [], [], []
    for block, grad in zip(curv.blocks, curv.grads, strict=True):
        system = condition(block, cfg)
        analysis = scheduler.analyse(system)
        decision = scheduler.decide(system, analysis)
        result = scheduler.run(system, grad, decision)
        directions.append(result.x)
        solvers.append(result.solver)
        systems.append(system)
    return directions, solvers, systems
