"""Curvature (pipeline stage 1): one symmetric N×N block per parameter block.

* :mod:`~qnewton.curvature.params` — parameter blocks, grouping, flattening order;
* :mod:`~qnewton.curvature.representation` — how a block is held (dense, factor form,
  matrix-free);
* :mod:`~qnewton.curvature.products` — curvature-vector products for matrix-free blocks;
* :mod:`~qnewton.curvature.kinds` — the registry of curvature kinds, one class per kind
  (:mod:`~qnewton.curvature.hessian`, :mod:`~qnewton.curvature.fisher`,
  :mod:`~qnewton.curvature.ggn`, :mod:`~qnewton.curvature.ggn_mc`);
* :mod:`~qnewton.curvature.per_sample` — per-sample gradients from one backward pass, one
  handler per layer type (linear, convolution, embedding, layer norm, …);
* :mod:`~qnewton.curvature.recurrent` — GRU/LSTM unrolled into per-step linear maps
  (:func:`unfuse_recurrent`), so their per-sample rows take the one-pass path;
* :mod:`~qnewton.curvature.compute` — :func:`compute_curvature` from an evaluated closure;
* :mod:`~qnewton.curvature.schedule` — curvature subsets and reuse across steps
  (:class:`CurvatureSchedule`).
"""

from qnewton.curvature.compute import (
    OVER_BUDGET,
    CurvatureResult,
    compute_curvature,
    estimate_block_bytes,
    evaluate_closure,
    mean_loss_gradients,
)
from qnewton.curvature.config import CurvatureBudgetError, CurvatureConfig
from qnewton.curvature.finite import finite_each, finite_sum
from qnewton.curvature.kind import ClosureError, CurvatureKind
from qnewton.curvature.kinds import CURVATURES
from qnewton.curvature.memory import DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_ROWS, format_bytes
from qnewton.curvature.params import (
    GROUPINGS,
    ParamBlock,
    blocks_from_module,
    blocks_from_params,
    flatten_block,
    group_parameters,
    unflatten_block,
)
from qnewton.curvature.partition import BlockPartition
from qnewton.curvature.per_sample import curvature_closure
from qnewton.curvature.prepare import prepare
from qnewton.curvature.recurrent import unfuse_recurrent
from qnewton.curvature.representation import (
    CurvatureBlock,
    DenseBlock,
    FactorBlock,
    MatrixFreeBlock,
    MatrixFreeError,
    dense_block_bytes,
)
from qnewton.curvature.schedule import CurvatureSchedule, curvature_subset

__all__ = [
    "CURVATURES", "DEFAULT_CHUNK_BYTES", "DEFAULT_CHUNK_ROWS", "GROUPINGS", "OVER_BUDGET",
    "BlockPartition", "ClosureError", "CurvatureBlock", "CurvatureBudgetError",
    "CurvatureConfig", "CurvatureKind",
    "CurvatureResult", "CurvatureSchedule", "DenseBlock", "FactorBlock", "MatrixFreeBlock",
    "MatrixFreeError", "ParamBlock", "blocks_from_module", "blocks_from_params",
    "compute_curvature", "curvature_closure", "curvature_subset", "dense_block_bytes",
    "estimate_block_bytes",
    "evaluate_closure", "finite_each", "finite_sum", "flatten_block", "format_bytes",
    "group_parameters", "mean_loss_gradients", "prepare", "unflatten_block", "unfuse_recurrent",
]
