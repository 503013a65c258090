"""The optimizer's parameter blocks: each param group partitioned by a grouping, kept current."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qnewton.curvature.params import ParamBlock, auto_grouping, group_parameters


class BlockPartition:
    """The blocks of every ``torch.optim`` param group under ``grouping``
    (:data:`~qnewton.curvature.GROUPINGS`, or ``"auto"``: ``auto`` when given — a curvature
    kind's own grouping —, else by size, :func:`auto_grouping`, over all groups' live
    parameters; recorded in :attr:`resolved`), over the parameters that
    require grad *now*: a parameter frozen (``requires_grad_(False)``) or unfrozen later
    regroups its group."""

    def __init__(self, grouping: str, auto: str | None = None) -> None:
        self.grouping = grouping
        #: what ``"auto"`` resolves to whatever the size (the curvature kind's own grouping)
        self.auto = auto
        #: the grouping in use (``"auto"`` resolved at the first :meth:`current`)
        self.resolved = None if grouping == "auto" else grouping
        self._blocks: list[list[ParamBlock]] = []

    def add_group(self, group: dict[str, Any]) -> None:
        """Partition one more param group (in ``torch.optim``'s order)."""
        if self.resolved is None:
            self._blocks.append([])  # partitioned with every group once "auto" is resolved
            return
        self._blocks.append(self._partition(len(self._blocks), group))

    def _resolve(self, groups: Sequence[dict[str, Any]]) -> None:
        live = sum(p.numel() for g in groups for p in g["params"] if p.requires_grad)
        self.resolved = self.auto or auto_grouping(live)
        self._blocks = [self._partition(i, g) for i, g in enumerate(groups)]

    def _partition(self, index: int, group: dict[str, Any]) -> list[ParamBlock]:
        names = group.get("param_names")
        if names is None:
            if self.resolved == "module":
                raise ValueError(
                    "grouping='module' needs parameter names: pass model.named_parameters()")
            names = [f"group{index}.param{i}" for i in range(len(group["params"]))]
        blocks = group_parameters(zip(names, group["params"], strict=True), self.resolved)
        if self.resolved == "model" and index > 0:  # one block per group: unique names
            blocks = [ParamBlock(f"{b.name}[group{index}]", b.params) for b in blocks]
        return blocks

    def current(self, groups: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], ParamBlock]]:
        """``(group, block)`` for every block of the live parameters, in order."""
        if self.resolved is None:
            self._resolve(groups)
        for i, group in enumerate(groups):
            live = {id(p) for p in group["params"] if p.requires_grad}
            if live != {id(p) for b in self._blocks[i] for p in b.params}:
                self._blocks[i] = self._partition(i, group) if live else []
        return [(g, b) for g, bs in zip(groups, self._blocks, strict=True) for b in bs]
