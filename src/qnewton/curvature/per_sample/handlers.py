"""The registry of per-sample gradient handlers: adding a layer type is one file (a
:class:`~qnewton.curvature.per_sample.handler.NodeHandler`) and one entry here."""

from __future__ import annotations

from qnewton.curvature.per_sample.batch_norm import BatchNormHandler
from qnewton.curvature.per_sample.bias_add import BiasAddHandler
from qnewton.curvature.per_sample.conv import ConvHandler
from qnewton.curvature.per_sample.embedding import EmbeddingHandler
from qnewton.curvature.per_sample.embedding_bag import EmbeddingBagHandler
from qnewton.curvature.per_sample.handler import NodeHandler
from qnewton.curvature.per_sample.layer_norm import LayerNormHandler
from qnewton.curvature.per_sample.linear import LinearHandler
from qnewton.registry import Registry

NODE_HANDLERS: Registry[NodeHandler] = Registry("per-sample handler")
NODE_HANDLERS.register("linear", LinearHandler())
NODE_HANDLERS.register("conv", ConvHandler())
NODE_HANDLERS.register("embedding", EmbeddingHandler())
NODE_HANDLERS.register("embedding-bag", EmbeddingBagHandler())
NODE_HANDLERS.register("layer-norm", LayerNormHandler())
NODE_HANDLERS.register("batch-norm", BatchNormHandler())
NODE_HANDLERS.register("bias-add", BiasAddHandler())


def handlers_by_node_type() -> dict[str, NodeHandler]:
    """``{autograd node class name: handler}`` over the registered handlers."""
    found: dict[str, NodeHandler] = {}
    for handler in NODE_HANDLERS.values():
        for node_type in handler.node_types:
            if node_type in found:
                raise ValueError(f"two per-sample handlers claim {node_type}")
            found[node_type] = handler
    return found
