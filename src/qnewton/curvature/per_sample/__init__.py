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

* :mod:`~qnewton.curvature.per_sample.recording` — :func:`curvature_closure`, the context the
  closure runs in (module calls recorded, math attention kernel);
* :mod:`~qnewton.curvature.per_sample.functional` — any other module: re-run alone per sample
  under ``torch.func.vmap``.

What neither path reproduces (fused recurrent kernels, modules coupling samples) takes the
generic loop;
:func:`qnewton.curvature.recurrent.unfuse_recurrent` unrolls GRU/LSTM modules into per-step linear
maps, which the linear handler understands.
"""

from qnewton.curvature.per_sample.engine import check_rows, factor_rows, per_sample_rows
from qnewton.curvature.per_sample.handler import NodeHandler, Unsupported
from qnewton.curvature.per_sample.handlers import NODE_HANDLERS
from qnewton.curvature.per_sample.recording import curvature_closure, latest_recording

__all__ = ["NODE_HANDLERS", "NodeHandler", "Unsupported", "check_rows", "curvature_closure",
           "factor_rows", "latest_recording", "per_sample_rows"]
