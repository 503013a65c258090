"""Per-sample gradients from one backward pass per seed, for the layer types a handler knows.

* :mod:`~qnewton.curvature.per_sample.handler` — the :class:`NodeHandler` interface;
* one handler per autograd node type: :mod:`~qnewton.curvature.per_sample.linear`,
  :mod:`~qnewton.curvature.per_sample.conv`, :mod:`~qnewton.curvature.per_sample.embedding`,
  :mod:`~qnewton.curvature.per_sample.embedding_bag`,
  :mod:`~qnewton.curvature.per_sample.layer_norm`, :mod:`~qnewton.curvature.per_sample.batch_norm`
  (evaluation mode), registered in :mod:`~qnewton.curvature.per_sample.handlers`;
* :mod:`~qnewton.curvature.per_sample.graph` — which parameters the handlers understand;
* :mod:`~qnewton.curvature.per_sample.engine` — :func:`per_sample_rows`: capture δ, form the
  rows, check them against the generic path (docs/method.md §4.7).

Fused recurrent kernels (GRU, LSTM) and everything else without a handler take the generic path;
:func:`qnewton.curvature.recurrent.unfuse_recurrent` unrolls GRU/LSTM modules into per-step linear
maps, which the linear handler understands.
"""

from qnewton.curvature.per_sample.engine import check_rows, factor_rows, per_sample_rows
from qnewton.curvature.per_sample.handler import NodeHandler, Unsupported
from qnewton.curvature.per_sample.handlers import NODE_HANDLERS

__all__ = ["NODE_HANDLERS", "NodeHandler", "Unsupported", "check_rows", "factor_rows",
           "per_sample_rows"]
