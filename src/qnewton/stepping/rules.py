"""The registry of step rules: adding a rule is one new file and one entry here."""

from __future__ import annotations

from collections.abc import Callable

from qnewton.registry import Registry
from qnewton.stepping.adaptive import AdaptiveLM, check_damping
from qnewton.stepping.fixed import FixedStep
from qnewton.stepping.rule import StepRule

#: name → factory taking the rule settings of :class:`~qnewton.QNewton` (``damping``).
STEP_RULES: Registry[Callable[..., StepRule]] = Registry("step_rule")
STEP_RULES.register("adaptive", lambda damping: AdaptiveLM(damping))
STEP_RULES.register("fixed", lambda damping: FixedStep())


def check_step_rule(step_rule: str, damping: float) -> None:
    """Validate the step-rule arguments of :class:`~qnewton.QNewton`."""
    STEP_RULES.check(step_rule)
    check_damping(damping)
