"""κ kept between a block's steps (docs/method.md §4.8, "κ kept between steps").

Estimating κ is the largest fixed cost of a GGN step on small models (a Lanczos run on a tall
factor's Gram: 11.4 ms of a 71-ms MNIST MLP step, measured, docs/method.md §4.8), and the
curvature of a block changes little from
one step to the next. So an estimate is kept per block and carried to its next
:data:`KAPPA_EVERY` − 1 systems without a product with A, as if the block's curvature had been
rescaled uniformly by the change of its trace (its cached diagonal, free) while the shift is the
new one exactly:

    λ_max' = (λ_max − s)·r + s',   λ_min' = (λ_min − s)·r + s',   κ' = λ_max'/λ_min',

with ``r = tr C'/tr C``, ``s, s'`` the old and new shifts, ``λ_max`` the old ‖A‖₂ figure and
``λ_min = λ_max/κ``. Where the factor has fewer rows than the block has parameters (a
mini-batch), λ_min(C) = 0 and the carried λ_min' = s' is exact. A kept κ is an estimate (kind
``"estimate"``, method ``"… kept k step(s)"``): it carries no guarantee, so it may only make a
classical choice. The scheduler re-estimates when it would choose the QLSA, when r leaves
[1/2, 2], when the block's shape changes, and every :data:`KAPPA_EVERY`-th system.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qnewton.estimation.kappa import KappaEstimate, kappa_from_log
from qnewton.system import LinearSystem

#: A block's κ is estimated afresh at least every KAPPA_EVERY-th system (K-FAC libraries refresh
#: their inverses every 10–100 steps; a stale κ costs at most a slower classical solver here).
KAPPA_EVERY = 10
#: The kept estimate is dropped when the curvature's scale (trace) moved by more than this
#: factor either way: the uniform-rescaling carry is then not to be trusted.
TRACE_RATIO_MAX = 2.0


@dataclass
class _Kept:
    value: float
    method: str
    norm: float
    trace: float
    shift: float
    shape: tuple[int, int | None]
    uses: int = 0


def _trace(system: LinearSystem) -> float:
    return float(system.block.diagonal().double().sum())


class KeptKappa:
    """The kept κ estimates of one scheduler, by block name (module docstring)."""

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}

    @staticmethod
    def keeps(system: LinearSystem) -> bool:
        """Whether ``system``'s κ can be carried (a PSD block plus a positive shift, held
        implicitly: its trace comes from the cached diagonal)."""
        return system.dense is None and system.psd_plus_shift

    def take(self, key: str, system: LinearSystem) -> tuple[KappaEstimate, float] | None:
        """``(κ, ‖A‖₂ figure)`` carried to ``system`` from the estimate kept for ``key``, or
        ``None`` when none may be used (the caller estimates, then :meth:`keep`)."""
        kept = self._kept.get(key)
        if kept is None or not self.keeps(system):
            return None
        kept.uses += 1
        trace = _trace(system)
        ratio = trace / kept.trace if kept.trace > 0 else math.nan
        if (kept.uses >= KAPPA_EVERY or kept.shape != (system.n, system.factor_rows)
                or not (1.0 / TRACE_RATIO_MAX <= ratio <= TRACE_RATIO_MAX)):
            del self._kept[key]
            return None
        top = (kept.norm - kept.shift) * ratio + system.shift
        bottom = (kept.norm / kept.value - kept.shift) * ratio + system.shift
        if not (top > 0 and bottom > 0 and math.isfinite(top)):
            del self._kept[key]
            return None
        kappa = kappa_from_log(math.log(max(top / bottom, 1.0)), "estimate",
                               f"{kept.method} kept {kept.uses} step(s)", 0.0)
        return kappa, top

    def keep(self, key: str, system: LinearSystem, kappa: KappaEstimate, norm: float) -> None:
        """Keep a fresh estimate for ``key`` (one whose figures carry: finite, positive)."""
        trace = _trace(system)
        if not (self.keeps(system) and math.isfinite(kappa.value) and kappa.value >= 1.0
                and math.isfinite(norm) and norm > 0 and trace > 0):
            self._kept.pop(key, None)
            return
        self._kept[key] = _Kept(kappa.value, kappa.method, norm, trace, system.shift,
                                (system.n, system.factor_rows))

    def state_dict(self) -> dict[str, Any]:
        return {key: vars(k).copy() for key, k in self._kept.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._kept = {key: _Kept(**{**v, "shape": tuple(v["shape"])})
                      for key, v in state.items()}
