"""Memory figures for curvature: chunk sizes of batched backward passes, element sizes, bytes."""

from __future__ import annotations

import torch

#: Default chunk when ``chunk_size`` is not given: at most this many rows, and at most
#: :data:`DEFAULT_CHUNK_BYTES` of output rows. Each batched backward also holds one copy of the
#: graph's intermediates per row, so larger chunks cost memory (on CPU, chunks of 32–512 rows of
#: a 3072-parameter block ran at the same speed while peak memory grew ~4× from 128 to 3072 rows).
DEFAULT_CHUNK_ROWS = 128
DEFAULT_CHUNK_BYTES = 64 * 1024**2


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


def chunk_rows(chunk_size: int | None, rows: int, row_bytes: int) -> int:
    """Rows per batched backward pass: ``chunk_size`` if given, else up to
    :data:`DEFAULT_CHUNK_ROWS` rows within :data:`DEFAULT_CHUNK_BYTES` (at least 1)."""
    if chunk_size is not None:
        return max(1, min(chunk_size, rows))
    return max(1, min(rows, DEFAULT_CHUNK_ROWS, DEFAULT_CHUNK_BYTES // max(1, row_bytes)))
