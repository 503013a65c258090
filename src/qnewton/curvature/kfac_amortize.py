"""K-FAC amortization: running-average factors every step, refactorized every T steps.

Martens & Grosse 2015 keep exponentially decayed averages of the factors (§5: weight
``ε = min(1 − 1/k, ε_max)`` on the old average at the k-th update, so early averages are plain
means) and recompute the inverses only every T₃ steps (§8). Here, per Kronecker block:

* every step that builds curvature (not one that reuses it, ``curvature_every``), the block's
  fresh factors update the running averages ``Ā ← ε Ā + (1 − ε) A``, ``Ḡ ← ε Ḡ + (1 − ε) G``;
* at steps that are multiples of ``every`` (and whenever no snapshot exists), the running
  averages become the block's **snapshot**, whose eigendecompositions are computed once;
* every step solves with the snapshot. So the system the scheduler sees, its κ, and the matrix
  the solver inverts are one and the same — the snapshot damped with this step's λ — and
  between refreshes a solve costs two matmul pairs (the eigendecompositions are kept).

The averages and the snapshots are this object's :meth:`~KroneckerAmortizer.state_dict` (by block
name, in float64 as computed), which the optimizer's ``state_dict`` carries — not the
per-parameter state, which ``torch.optim`` casts to the parameters' dtype on loading — so a
resumed run is bit-identical (the eigendecompositions are recomputed from the same snapshot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from qnewton.curvature.kronecker import KroneckerBlock
from qnewton.curvature.params import ParamBlock
from qnewton.validation import check_int, check_real


class KroneckerAmortizer:
    """Running averages and refresh schedule of the Kronecker blocks of one optimizer.

    Attributes:
        every: refactorize (take a new snapshot) every this many steps (≥ 1; 1: every step).
        decay: ε_max, the largest weight of the old average (in ``[0, 1)``; 0: this step's
            factors only, no averaging).
        refreshed, reused: how many block solves took a fresh snapshot and how many reused one.
    """

    def __init__(self, every: int = 1, decay: float = 0.95) -> None:
        self.every = check_int("kfac_every", every, 1)
        self.decay = check_real("kfac_decay", decay, low=0.0, high=1.0, high_open=True)
        self.refreshed = 0
        self.reused = 0
        #: per block name: running factors, update count, snapshot factors (float64)
        self.stats: dict[str, dict[str, Any]] = {}
        self._snapshots: dict[str, KroneckerBlock] = {}

    def state_dict(self) -> dict[str, Any]:
        return {name: dict(slot) for name, slot in self.stats.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = {name: dict(slot) for name, slot in state.items()}
        self._snapshots = {}

    def __call__(self, step: int, blocks: Sequence[ParamBlock],
                 curvature: Sequence[Any], *, fresh: bool = True) -> list[Any]:
        """The blocks to solve at ``step``: each Kronecker block replaced by its snapshot (other
        blocks as they are). ``fresh``: the blocks were built at this step (else reused, and the
        averages are not updated again)."""
        out = list(curvature)
        for i, (block, curv) in enumerate(zip(blocks, curvature, strict=True)):
            if not isinstance(curv, KroneckerBlock):
                continue
            slot = self.stats.setdefault(block.name, {})
            if fresh:
                self._update(slot, curv)
            snap = self._snapshots.get(block.name)
            due = step % self.every == 0 or "kfac_snap_a" not in slot
            if due:
                slot["kfac_snap_a"] = slot["kfac_a"].clone()
                slot["kfac_snap_g"] = slot["kfac_g"].clone()
            if due or snap is None or snap.n != curv.n:
                snap = KroneckerBlock(curv.name, curv.kind, slot["kfac_snap_a"],
                                      slot["kfac_snap_g"], has_weight=curv.has_weight,
                                      has_bias=curv.has_bias, weight_first=curv.weight_first)
                self._snapshots[block.name] = snap
                self.refreshed += 1
            else:
                self.reused += 1
            out[i] = snap
        return out

    def _update(self, slot: dict, curv: KroneckerBlock) -> None:
        k = int(slot.get("kfac_updates", 0)) + 1
        eps = min(1.0 - 1.0 / k, self.decay)
        old_a, old_g = slot.get("kfac_a"), slot.get("kfac_g")
        if old_a is None or old_a.shape != curv.a.shape or old_g.shape != curv.g.shape:
            eps, old_a, old_g = 0.0, curv.a, curv.g
        slot["kfac_a"] = eps * old_a + (1.0 - eps) * curv.a
        slot["kfac_g"] = eps * old_g + (1.0 - eps) * curv.g
        slot["kfac_updates"] = k


def amortized(result: Any, amortizer: KroneckerAmortizer | None, step: int,
              blocks: Sequence[ParamBlock], reused: bool) -> Any:
    """``result`` (a :class:`~qnewton.curvature.compute.CurvatureResult`) with its Kronecker
    blocks replaced by their amortized snapshots; unchanged without an amortizer."""
    if amortizer is None:
        return result
    return replace(result, blocks=amortizer(step, blocks, result.blocks, fresh=not reused))
