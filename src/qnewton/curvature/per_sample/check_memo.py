"""The engine's check, remembered per graph structure (a fixed cost a step need not repeat).

The one-pass rows are compared with the generic computation (three backward passes,
:func:`~qnewton.curvature.per_sample.engine._checked`) because what the handlers assume —
samples that do not interact, a layout they understand — cannot all be read off the graph. What
the check decides depends on the graph's structure (its nodes, the parameters' uses, the sample
and seed counts), which a training loop repeats step after step with new data. So the verdict is
kept per structure and reused, and the check runs again every :data:`RECHECK_EVERY` uses and
whenever the structure changes (another batch size, a branch taken in the forward pass, another
block partition). On the digits MLP the check was about a quarter of a step's curvature time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import torch

from qnewton.curvature.params import ParamBlock
from qnewton.curvature.per_sample.graph import graph_nodes

#: A remembered verdict is used this many times, then the check runs again.
RECHECK_EVERY = 50
#: Structures remembered at once (least recently used dropped first).
MAX_STRUCTURES = 64


def block_key(block: ParamBlock) -> tuple[int, ...]:
    """What identifies a block across steps: its parameters (by identity)."""
    return tuple(id(p) for p in block.params)


def structure_key(root: torch.Tensor, *parts: Hashable) -> tuple[Hashable, ...]:
    """The graph's node types in traversal order and the root's shape, with ``parts`` (sample
    and seed counts, the blocks, the stage's options)."""
    nodes = tuple(type(n).__name__ for n in graph_nodes(root.grad_fn))
    return (tuple(root.shape), root.dtype, nodes, *parts)


class CheckMemo:
    """Verdicts of the engine's check by :func:`structure_key`: the blocks (:func:`block_key`)
    that passed."""

    def __init__(self) -> None:
        self._verdicts: OrderedDict[tuple, tuple[frozenset, int]] = OrderedDict()

    def passed(self, key: tuple, blocks: Sequence[ParamBlock]) -> set[int] | None:
        """The ids of ``blocks`` that passed under ``key``, or ``None`` when the check must run
        (a new structure, or a verdict used :data:`RECHECK_EVERY` times)."""
        entry = self._verdicts.get(key)
        if entry is None:
            return None
        keys, uses = entry
        if uses >= RECHECK_EVERY:
            del self._verdicts[key]
            return None
        self._verdicts[key] = (keys, uses + 1)
        self._verdicts.move_to_end(key)
        return {id(b) for b in blocks if block_key(b) in keys}

    def remember(self, key: tuple, blocks: Sequence[ParamBlock], passed: set[int]) -> None:
        """Keep the verdict of a check just run on ``blocks``."""
        self._verdicts[key] = (frozenset(block_key(b) for b in blocks if id(b) in passed), 0)
        self._verdicts.move_to_end(key)
        while len(self._verdicts) > MAX_STRUCTURES:
            self._verdicts.popitem(last=False)

    def clear(self) -> None:
        self._verdicts.clear()


#: The engine's memo (per process: the structures of the models it trains).
CHECKS = CheckMemo()
