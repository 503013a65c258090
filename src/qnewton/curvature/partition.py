"""The optimizer's parameter blocks: each param group partitioned by a grouping, kept current."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qnewton.curvature.params import ParamBlock, group_parameters


class BlockPartition:
    """The blocks of every ``torch.optim`` param group under ``grouping``
    (:data:`~qnewton.curvature.GROUPINGS`), over the parameters that require grad *now*: a
    parameter frozen (``requires_grad_(False)``) or unfrozen later regroups its group."""

    def __init__(self, grouping: str) -> None:
        self.grouping = grouping
        self._blocks: list[list[ParamBlock]] = []

    def add_group(self, group: dict[str, Any]) -> None:
        """Partition one more param group (in ``torch.optim``'s order)."""
        self._blocks.append(self._partition(len(self._blocks), group))

    def _partition(self, index: int, group: dict[str, Any]) -> list[ParamBlock]:
        names = group.get("param_names")
        if names is None:
            if self.grouping == "module":
                raise ValueError(
                    "grouping='module' needs parameter names: pass model.named_parameters()")
            names = [f"group{index}.param{i}" for i in range(len(group["params"]))]
        return group_parameters(zip(names, group["params"], strict=True), self.grouping)

    def current(self, groups: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], ParamBlock]]:
        """``(group, block)`` for every block of the live parameters, in order."""
        for i, group in enumerate(groups):
            live = {id(p) for p in group["params"] if p.requires_grad}
            if live != {id(p) for b in self._blocks[i] for p in b.params}:
                self._blocks[i] = self._partition(i, group) if live else []
        return [(g, b) for g, bs in zip(groups, self._blocks, strict=True) for b in bs]
