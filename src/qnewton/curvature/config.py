"""Settings for building curvature, and the memory budget every block is checked against."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qnewton.validation import check_int

#: Default chunk when ``chunk_size`` is not given: at most this many rows, and at most
#: :data:`DEFAULT_CHUNK_BYTES` of output rows. Each batched backward also holds one copy of the
#: graph's intermediates per row, so larger chunks cost memory (on CPU, chunks of 32–512 rows of
#: a 3072-parameter block ran at the same speed while peak memory grew ~4× from 128 to 3072 rows).
DEFAULT_CHUNK_ROWS = 128
DEFAULT_CHUNK_BYTES = 64 * 1024**2


class CurvatureBudgetError(MemoryError):
    """A curvature block would exceed the configured memory budget."""


@dataclass(frozen=True)
class CurvatureConfig:
    """How to build curvature blocks.

    Attributes:
        kind: a name in :data:`qnewton.curvature.CURVATURES` (``"hessian"``: exact diagonal
            blocks, dense; ``"ggn"``: generalized Gauss-Newton, factor form, needs the outputs;
            ``"fisher"``: empirical Fisher, factor form).
        max_block_bytes: memory budget for any one block as stored (a dense N×N matrix or a
            factor ``F``), checked *before* building it.
        chunk_size: rows (Hessian rows, per-sample gradients, GGN factor rows) computed per
            batched backward pass. ``None``: up to :data:`DEFAULT_CHUNK_ROWS` rows, fewer if the
            rows would exceed :data:`DEFAULT_CHUNK_BYTES` (at least 1). The batched backward holds
            ``chunk_size`` copies of the graph's intermediates, so lower it for big activations.
            Results do not depend on it.
        dtype: floating dtype the blocks and gradients are returned in (computation runs in the
            model's dtype, the results are cast).
    """

    kind: str = "fisher"
    max_block_bytes: int = 2 * 1024**3
    chunk_size: int | None = None
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        from qnewton.curvature.kinds import CURVATURES  # the registry imports this module

        CURVATURES.check(self.kind)
        check_int("max_block_bytes", self.max_block_bytes, 1)
        if self.chunk_size is not None:
            check_int("chunk_size", self.chunk_size, 1)
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {self.dtype!r}")


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def format_bytes(num_bytes: float) -> str:
    """Human-readable size with binary units (``'4.1 GiB'``)."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
