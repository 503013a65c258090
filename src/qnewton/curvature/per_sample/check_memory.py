"""The engine's check, kept for graphs whose structure it already judged (docs/method.md §4.7,
"The check is kept for a graph it has judged").

The check (:func:`~qnewton.curvature.per_sample.engine._checked`) compares the one-pass rows
with a batched backward pass: on a small model it is a fifth of the step (MNIST MLP, batch 128,
empirical Fisher, measured in one process with the check every step and kept: 15.2 → 12.1 ms
per step, docs/method.md §4.7).
What it detects — samples coupled by the graph (BatchNorm in training mode, a batch-normalized
loss), a layout the handlers misread, a sample map that does not fit — is a property of the
graph's structure, which a training loop rebuilds identically at every step. So a check that
passed is kept for the next graphs with the same :func:`check_key`, the same parameters and the same
sample maps, and repeated every :data:`RECHECK_EVERY`-th use: a structure the key cannot see
(the dimension a mean is taken over, a data-dependent branch between ops of the same types) is
still caught within that many steps. A check that fails is never kept: the next graph is
checked again.

Coupling can also depend on values under the same graph: a batch context behind a gate that
starts at zero (ReZero, LayerScale, adaLN-Zero) couples the samples only once the gate opens.
So a kept check is used only after one backward pass seeded on a single sample k (a different
one at each use) finds no gradient on any other sample's rows at any node the rows come from
(:func:`leaks`): where the samples are independent those rows are exactly zero, and a
coupling that reaches sample k's loss from another sample shows there. That pass is a fraction
of the check (one backward, no rows built).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from qnewton.curvature.per_sample.capture import capture, one_sample_seed
from qnewton.curvature.per_sample.handler import REFUSALS, SampleRows

#: A kept check is repeated at every RECHECK_EVERY-th graph it serves: a sixteenth of its cost,
#: and a structure the key cannot tell apart found within 16 steps.
RECHECK_EVERY = 16
#: Checks kept at once (the least recently used is dropped): a training loop builds one or two
#: graph structures (train and trial losses), a few more with curvature subsets.
KEPT_MAX = 16


@dataclass
class _Kept:
    passed: frozenset[str]
    params: list[weakref.ref]
    maps: list[torch.Tensor | None]
    served: int = field(default=0)


_KEPT: OrderedDict[Hashable, _Kept] = OrderedDict()


def check_key(root: torch.Tensor, nodes: Sequence[object], s: int, kept: int, npass: int,
        blocks: Sequence[object], mode: Hashable) -> tuple:
    """What the check's outcome depends on that can be read without running it: the root's
    shape and dtype, the samples and seeds, the blocks (names and parameter ids), the type of
    every node of the graph in traversal order, and ``mode`` (the engine's stage and options)."""
    return (tuple(root.shape), root.dtype, s, kept, npass, mode,
            tuple((b.name, tuple(id(p) for p in b.params)) for b in blocks),
            tuple(type(n).__name__ for n in nodes))


def _maps_equal(a: Sequence[torch.Tensor | None], b: Sequence[torch.Tensor | None]) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in zip(a, b, strict=True))


def kept_check(k: tuple, params: Sequence[torch.Tensor],
               maps: Sequence[torch.Tensor | None]) -> tuple[frozenset[str], int] | None:
    """The names of the blocks that passed the check kept for ``k``, and how many graphs it has
    served — when it is kept, for the same parameter objects and sample maps, and this is not a
    graph on which it is repeated — else ``None`` (the caller checks)."""
    entry = _KEPT.get(k)
    if entry is None:
        return None
    same = (len(entry.params) == len(params)
            and all(ref() is p for ref, p in zip(entry.params, params, strict=True))
            and _maps_equal(entry.maps, maps))
    entry.served += 1
    if not same or entry.served >= RECHECK_EVERY:
        del _KEPT[k]
        return None
    _KEPT.move_to_end(k)
    return entry.passed, entry.served


def leaks(root: torch.Tensor, s: int, sample: int, nodes: dict[int, object],
          ctxs: dict[int, object], handler_of: dict[int, object], layouts: dict[int, str],
          params: Sequence[torch.Tensor]) -> bool:
    """Whether a backward pass seeded on ``sample``'s part of ``root`` alone reaches another
    sample's rows at any of ``nodes`` (the rows' owners: the sample map of mapped rows, ``r % S``
    for rows the layout probe found time-major, ``r // T`` otherwise). ``True`` also when the
    pass fails or a node's rows cannot be read: the caller then checks."""
    try:
        deltas, _ = capture(root, one_sample_seed(root, s, sample), nodes, list(params))
    except RuntimeError:
        return True
    for key, delta in deltas.items():
        ctx = ctxs[key]
        try:
            rows = handler_of[key].delta_rows(ctx, delta)
        except REFUSALS:
            return True
        r = rows.shape[0]
        if isinstance(ctx, SampleRows):
            owner = ctx.sample.to(rows.device)
        elif r % s:
            return True
        elif layouts.get(key) == "time-major":
            owner = torch.arange(r, device=rows.device) % s
        else:
            owner = torch.arange(r, device=rows.device) // (r // s)
        if bool(rows[owner != sample].any()):
            return True
    return False


def keep_check(k: tuple, params: Sequence[torch.Tensor],
               maps: Sequence[torch.Tensor | None], passed: frozenset[str],
               checked: frozenset[str]) -> None:
    """Keep a check that every block in ``checked`` passed; forget ``k`` otherwise."""
    if passed != checked:
        _KEPT.pop(k, None)
        return
    _KEPT[k] = _Kept(passed, [weakref.ref(p) for p in params],
                     [None if m is None else m.clone() for m in maps])
    while len(_KEPT) > KEPT_MAX:
        _KEPT.popitem(last=False)

