"""Settings for building curvature, and the memory budget every block is checked against."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qnewton.validation import check_int

#: How per-sample rows treat BatchNorm in training mode (:attr:`CurvatureConfig.batch_norm`).
BATCH_NORM_ROWS = ("held", "exact")

#: Outputs per sample above which ``"ggn"`` builds the Monte-Carlo GGN: the exact factor then
#: has more than 16× the rows of an empirical Fisher (16 backward passes per step on the one-pass
#: path, and 16× its memory, Gram matrix and Woodbury work); classifiers with ≤ 16 classes keep
#: the exact GGN. A 64-output autoencoder at S = 1,024 took 52 s per step with its 65,536 rows.
GGN_MAX_OUTPUTS = 16


class CurvatureBudgetError(MemoryError):
    """A curvature block would exceed the configured memory budget."""


@dataclass(frozen=True)
class CurvatureConfig:
    """How to build curvature blocks.

    Attributes:
        kind: a name in :data:`qnewton.curvature.CURVATURES` (``"hessian"``: exact diagonal
            blocks, dense; ``"ggn"``: generalized Gauss-Newton, factor form, needs the outputs;
            ``"fisher"``: empirical Fisher, factor form; ``"ggn-mc"``: Monte-Carlo GGN, one
            sampled row per sample, factor form, needs the outputs).
        max_block_bytes: memory budget for any one block as stored (a dense N×N matrix or a
            factor ``F``), checked *before* building it.
        chunk_size: rows (Hessian rows, per-sample gradients, GGN factor rows) computed per
            batched backward pass. ``None``: up to ``DEFAULT_CHUNK_ROWS`` rows, fewer if the rows
            would exceed ``DEFAULT_CHUNK_BYTES`` (at least 1). The batched backward holds
            ``chunk_size`` copies of the graph's intermediates, so lower it for big activations.
            See :mod:`qnewton.curvature.memory`.
            Results do not depend on it.
        dtype: floating dtype the blocks are *stored* in and the gradients returned in;
            ``None`` (default): the model's dtype (that of the losses), so a float32 model's
            factors take half the memory of float64 ones. Blocks compute in float64 whatever
            their storage (products, diagonal, explicit and Gram matrices: :data:`~qnewton.
            curvature.representation.ARITHMETIC_DTYPE`; docs/method.md §4.7, "Storage and
            arithmetic dtypes"). Matrix-free blocks store nothing and compute in float64.
        seed: seed of the random directions of ``"ggn-mc"``, mixed with the bytes of the outputs
            so that every batch gets its own draw and a call is reproducible; ``None`` draws from
            torch's global RNG instead. Other kinds are deterministic and ignore it.
        batch_norm: per-sample rows of the layers before a BatchNorm in training mode (whose
            batch statistics couple the samples): ``"held"`` (default) — the rows as if the
            batch statistics were constants, one backward pass per seed (the approximation
            K-FAC libraries make; docs/method.md §4.7); ``"exact"`` — the gradient of each
            coupled loss term, one backward pass per sample for those layers. The mean-loss
            gradient is exact either way.
        ggn_max_outputs: ``"ggn"`` with more outputs per sample than this builds the
            Monte-Carlo GGN instead (``"ggn-mc"``: one sampled row per sample, unbiased, the
            cost of a Fisher) — the exact GGN's S·C rows would cost more than C Fishers; the
            result's ``kind`` and ``substituted`` say so. ``None``: always the exact GGN.
    """

    kind: str = "fisher"
    max_block_bytes: int = 2 * 1024**3
    chunk_size: int | None = None
    dtype: torch.dtype | None = None
    seed: int | None = 0
    batch_norm: str = "held"
    ggn_max_outputs: int | None = GGN_MAX_OUTPUTS

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"kind must be a curvature name, got {self.kind!r}")
        check_int("max_block_bytes", self.max_block_bytes, 1)
        if self.chunk_size is not None:
            check_int("chunk_size", self.chunk_size, 1)
        if self.dtype is not None and (not isinstance(self.dtype, torch.dtype)
                                       or not self.dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype or None (the model's), got "
                             f"{self.dtype!r}")
        if self.seed is not None:
            check_int("seed", self.seed, 0)
        if self.ggn_max_outputs is not None:
            check_int("ggn_max_outputs", self.ggn_max_outputs, 1)
        if self.batch_norm not in BATCH_NORM_ROWS:
            raise ValueError(f"batch_norm must be one of {BATCH_NORM_ROWS}, got "
                             f"{self.batch_norm!r}")
