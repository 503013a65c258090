"""Scheduling (pipeline stage 6): route each linear system to a classical solver or the QLSA."""

from qnewton.scheduling.config import DEFAULT_SOLVERS, SchedulerConfig
from qnewton.scheduling.policies import POLICIES, Policy, PolicyInputs
from qnewton.scheduling.scheduler import Analysis, Decision, NoSolverError, Scheduler

__all__ = [
    "DEFAULT_SOLVERS", "POLICIES", "Analysis", "Decision", "NoSolverError", "Policy",
    "PolicyInputs", "Scheduler", "SchedulerConfig",
]
