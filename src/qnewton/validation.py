"""Argument validation, declared once: every check names the argument and what is allowed.

Each function returns the validated value (converted to ``int``/``float``) or raises
``ValueError`` with a message of the form ``"<name> must be <what is allowed>, got <value>"``.
The CLI reports these messages with the flag's name, so they must stay readable on their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def is_integer(value: Any) -> bool:
    """True for ints and integer-valued numbers that are not bools or floats (``numpy.int64``)."""
    if isinstance(value, bool | float | complex):
        return False
    try:
        return int(value) == value
    except (TypeError, ValueError, OverflowError):
        return False


def check_int(name: str, value: Any, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """An integer in ``[minimum, maximum]`` (either end optional)."""
    allowed = "an integer"
    if minimum is not None and maximum is not None:
        allowed = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
        allowed = f"an integer >= {minimum}"
    elif maximum is not None:
        allowed = f"an integer <= {maximum}"
    if not is_integer(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return v


def _as_real(name: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from None


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False,
               allow_inf: bool = False) -> float:
    """A real number in the interval given by ``low``/``high`` (open ends when ``*_open``).

    NaN is always rejected; infinities only with ``allow_inf``.
    """
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    allowed = ("a finite number" if not allow_inf else "a number") + (
        f" {' and '.join(parts)}" if parts else "")
    v = _as_real(name, value, allowed)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return v


def check_positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    return check_real(name, value, low=0.0, low_open=True)


def check_nonnegative(name: str, value: Any) -> float:
    """A finite number >= 0."""
    return check_real(name, value, low=0.0)


def check_open_unit(name: str, value: Any) -> float:
    """A number strictly between 0 and 1 (an error, a probability, a fraction)."""
    return check_real(name, value, low=0.0, high=1.0, low_open=True, high_open=True)


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """One of ``allowed`` (e.g. a :class:`~qnewton.registry.Registry`)."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_optional(check, name: str, value: Any, *args: Any, **kwargs: Any) -> Any:
    """``None``, or ``value`` validated by ``check(name, value, ...)``."""
    return None if value is None else check(name, value, *args, **kwargs)
