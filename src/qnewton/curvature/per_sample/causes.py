"""Why a block's per-sample rows took the generic path, read off the autograd graph, so that the
warning names the actual cause and its fix instead of always suggesting the recurrent one."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from qnewton.curvature.per_sample.graph import graph_nodes

#: Node-name fragments of fused recurrent kernels (nn.LSTM / nn.GRU / nn.RNN on CPU and GPU).
RECURRENT_KINDS = ("Rnn", "Lstm", "Gru")
#: The fix for a fused recurrent kernel.
RECURRENT_FIX = ("a fused recurrent kernel ({kinds}): call "
                 "qnewton.prepare(model) once after building the model")
#: A train-mode BatchNorm couples the samples of a batch: no per-sample rule exists.
BATCHNORM_CAUSE = ("BatchNorm in training mode: it normalizes over the batch, so each sample's "
                   "gradient depends on the others and no one-pass per-sample rule applies; "
                   "use GroupNorm/LayerNorm, or put the BatchNorm layers in eval mode")
#: Attention (softmax of a batched product) has no one-pass rule.
ATTENTION_CAUSE = ("attention (a softmax over batched products of the inputs): no one-pass rule "
                   "covers it; the generic path is exact, only slower")


def _consumer_kinds(nodes: Iterable[object], params: set[int]) -> set[str]:
    """Type names of the nodes that take one of ``params`` (directly or through a transpose)."""
    kinds = set()
    for node in nodes:
        for child, _ in getattr(node, "next_functions", ()):
            if child is None:
                continue
            if type(child).__name__ == "TBackward0":
                child = (child.next_functions or ((None, 0),))[0][0]
            var = getattr(child, "variable", None) if child is not None else None
            if var is not None and id(var) in params:
                kinds.add(type(node).__name__)
    return kinds


def generic_path_causes(root: torch.Tensor, params: Iterable[torch.Tensor]) -> list[str]:
    """The reasons rows of a block with ``params`` cannot take the one-pass path in the graph of
    ``root``: a fused recurrent kernel using them, a train-mode BatchNorm or attention anywhere
    in the graph, else the operations that use them (none of which has a one-pass rule)."""
    grad_fn = getattr(root, "grad_fn", None)
    if grad_fn is None:
        return []
    nodes = graph_nodes(grad_fn)
    kinds = {type(n).__name__ for n in nodes}
    used_by = _consumer_kinds(nodes, {id(p) for p in params})
    causes = []
    recurrent = sorted(k for k in used_by if any(f in k for f in RECURRENT_KINDS))
    if recurrent:
        causes.append(RECURRENT_FIX.format(kinds=", ".join(recurrent)))
    if any("BatchNorm" in type(n).__name__ and getattr(n, "_saved_training", False)
           for n in nodes):
        causes.append(BATCHNORM_CAUSE)
    if any("Attention" in k for k in kinds) or (
            any("Softmax" in k for k in kinds) and "BmmBackward0" in kinds):
        causes.append(ATTENTION_CAUSE)
    if not causes:
        causes.append("no one-pass rule for the operations that use it ("
                      + ", ".join(sorted(used_by) or ["none found"]) + ")")
    return causes
