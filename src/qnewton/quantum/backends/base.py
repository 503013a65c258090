"""What a QLSA backend is: something that returns what a quantum linear solver would hand back.

There is no fault-tolerant quantum computer, so a backend computes the *output* of a QLSA run on
this machine; its :attr:`~qnewton.solvers.base.SolveResult.seconds` are the wall-clock seconds of
that computation (*emulation* time), never quantum time, which is *modeled* by
:func:`qnewton.quantum.quantum_cost` on a hardware profile.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from qnewton.solvers.base import SolveResult
from qnewton.system import LinearSystem


class QLSABackendFallbackWarning(UserWarning):
    """A block too large for the configured QLSA backend took its ``fallback`` backend."""


class QLSABackend(ABC):
    """A way to produce a QLSA's answer ``x̃ ≈ A⁻¹b`` for a system.

    ``max_n``: the largest block the backend handles (``None``: any); larger blocks take
    ``fallback``, a backend that computes the same output (see :func:`size_fallback`).
    """

    name: str
    max_n: int | None = None
    fallback: str | None = None

    @abstractmethod
    def solve(self, system: LinearSystem, b: torch.Tensor, *, eps: float,
              shots: int | None = None, seed: int = 0) -> SolveResult:
        """The QLSA's answer at relative error target ``eps`` (0 < ε < 1); ``shots`` reads the
        state out by sampling (``None``: exact amplitudes); ``seed`` fixes any randomness."""


def size_fallback(backend: QLSABackend, n: int) -> str | None:
    """The backend name an N = ``n`` block takes instead of ``backend`` (``None``: ``backend``
    itself): its ``fallback`` when ``n`` exceeds its ``max_n``."""
    if backend.max_n is not None and n > backend.max_n and backend.fallback is not None:
        return backend.fallback
    return None
