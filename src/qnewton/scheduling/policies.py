"""Routing policies: given the predicted times, which side solves a system.

Each policy is one registry entry. ``can_route_quantum`` says whether it can ever pick the QLSA
(a policy that cannot needs no κ estimate or quantum costing to decide); ``decides_by_time``
says whether the choice compares the two times (then a QLSA whose cheapest possible time already
loses is rejected without estimating κ: docs/method.md §4.8).
"""

from __future__ import annotations

from dataclasses import dataclass

from qnewton.registry import Registry


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy may look at (times in seconds: quantum *modeled*, classical *predicted*)."""

    quantum_seconds: float
    classical_seconds: float
    kappa: float
    kappa_threshold: float


@dataclass(frozen=True)
class Policy:
    """A named routing rule ``choose(inputs) -> "quantum" | "classical"``."""

    name: str
    description: str
    can_route_quantum: bool
    can_route_classical: bool
    decides_by_time: bool = False

    def choose(self, inputs: PolicyInputs) -> str:
        raise NotImplementedError


class CostPolicy(Policy):
    def choose(self, inputs: PolicyInputs) -> str:
        return "quantum" if inputs.quantum_seconds < inputs.classical_seconds else "classical"


class ThresholdPolicy(Policy):
    def choose(self, inputs: PolicyInputs) -> str:
        return "classical" if inputs.kappa > inputs.kappa_threshold else "quantum"


class FixedPolicy(Policy):
    def choose(self, inputs: PolicyInputs) -> str:
        return "quantum" if self.can_route_quantum else "classical"


POLICIES: Registry[Policy] = Registry("policy")
POLICIES.register("cost", CostPolicy(
    "cost", "the cheaper of the modeled quantum and the predicted classical time", True, True,
    decides_by_time=True))
POLICIES.register("threshold", ThresholdPolicy(
    "threshold", "the paper's rule: κ > kappa_threshold → classical, else quantum", True, True))
POLICIES.register("classical", FixedPolicy(
    "classical", "always the best classical solver", False, True))
POLICIES.register("quantum", FixedPolicy("quantum", "always the QLSA", True, False))
