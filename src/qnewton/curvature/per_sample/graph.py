"""Where the parameters are used in an autograd graph, as seen by the registered handlers."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qnewton.curvature.per_sample.handler import NodeHandler


@dataclass(frozen=True, eq=False)
class Use:
    """One use of a parameter: the node that consumes it, its handler and the role it plays."""

    node: object
    handler: NodeHandler
    role: str


def graph_nodes(root: object, stop: object = None) -> list[object]:
    """All autograd nodes reachable from ``root`` (each once), not walking past ``stop``."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or node is stop or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(nf for nf, _ in node.next_functions if nf is not None)
    return list(seen.values())


def _accumulated_param(node: object, params: dict[int, torch.Tensor]) -> torch.Tensor | None:
    if type(node).__name__ != "AccumulateGrad":
        return None
    var = getattr(node, "variable", None)
    return var if var is not None and id(var) in params else None


def _through_transposes(node: object, params: dict[int, torch.Tensor]
                        ) -> tuple[torch.Tensor | None, bool]:
    """The parameter ``node`` is, directly or through a chain of transposes (``F.linear``'s
    ``Wᵀ``; and ``(Wᵀ)ᵀ`` where a graph differentiated with ``create_graph=True`` multiplies by
    the weight again), and whether the chain transposes it (odd length)."""
    transposed = False
    while type(node).__name__ == "TBackward0":
        (node, _), = node.next_functions or ((None, 0),)
        transposed = not transposed
        if node is None:
            return None, False
    return _accumulated_param(node, params), transposed


def parameter_uses(
    root: object, params: dict[int, torch.Tensor], handlers: dict[str, NodeHandler]
) -> tuple[dict[int, list[Use]], set[int]]:
    """For each parameter (by id) reached from the node ``root``, its uses by handled nodes; and
    the ids of parameters with any use no handler understands (those take the generic path).

    A parameter reaches a node directly (its ``AccumulateGrad``) or through transpose nodes
    (``TBackward0``: one as ``F.linear`` uses its weight, two where a graph differentiated with
    ``create_graph=True`` multiplies by the weight); a transpose is judged at the node that
    consumes it, so every edge into a parameter is examined exactly once.
    """
    uses: dict[int, list[Use]] = {}
    other: set[int] = set()
    if type(root).__name__ == "TBackward0":  # a transposed parameter as the root: no consumer
        for nf, _ in root.next_functions:
            if (p := _accumulated_param(nf, params)) is not None:
                other.add(id(p))
    for node in graph_nodes(root):
        kind = type(node).__name__
        if kind == "TBackward0":
            continue  # judged at its parents: every edge into a ``Wᵀ`` node is examined there
        handler = handlers.get(kind)
        for pos, (child, _) in enumerate(node.next_functions):
            if child is None:
                continue
            target, transposed = _through_transposes(child, params)
            if target is None:
                continue
            role = handler.role(node, pos, transposed) if handler is not None else None
            if role is None:
                other.add(id(target))
            else:
                uses.setdefault(id(target), []).append(Use(node, handler, role))
    return uses, other
