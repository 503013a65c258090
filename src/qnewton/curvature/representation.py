"""Curvature block representations: how one symmetric N×N block is held in memory.

A block is the curvature of the loss with respect to one parameter block. Two representations
exist today, both behind the small :class:`CurvatureBlock` interface the rest of the pipeline
uses (size, dtype, matrix-vector products, diagonal, largest entry, the explicit matrix):

* :class:`DenseBlock` — an explicit ``(N, N)`` matrix (the exact Hessian);
* :class:`FactorBlock` — ``scale · Fᵀ F`` with ``F ∈ R^{M×N}`` (the empirical Fisher, ``M = S``
  per-sample gradients, and the GGN, ``M = S·C`` rows). It is never formed as an N×N matrix
  unless a dense solver asks for it; Woodbury and CG use the factor.

A matrix-free representation (only products ``v ↦ H v``) fits the same interface.
``psd`` says whether the block is known to be positive semidefinite, which the conditioning and
the κ bounds rely on (docs/method.md §4.2, §4.6); it is set by the curvature kind that built it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


def dense_block_bytes(n: int, dtype: torch.dtype = torch.float64) -> int:
    """Memory in bytes of one dense N×N block of ``dtype``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n * n * torch.empty((), dtype=dtype).element_size()


class CurvatureBlock(ABC):
    """A symmetric block ``H`` (N×N) of the curvature of one parameter block.

    Attributes:
        name: the block's name (parameter or module name).
        kind: the curvature kind that built it (``"hessian"``, ``"fisher"``, ``"ggn"``, ...).
        psd: whether ``H`` is known to be positive semidefinite.
    """

    name: str
    kind: str
    psd: bool

    @property
    @abstractmethod
    def n(self) -> int:
        """Block size N (number of parameters in the block)."""

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype: ...

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    def factor_rows(self) -> int | None:
        """M for a factor-form block ``scale·FᵀF`` (an upper bound on the rank), else ``None``."""
        return None

    @abstractmethod
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` of shape ``(N,)`` or ``(N, k)``."""

    @abstractmethod
    def diagonal(self) -> torch.Tensor:
        """The diagonal of ``H``, shape ``(N,)``, as a new tensor."""

    @abstractmethod
    def max_abs_entry(self, shift: float = 0.0) -> float:
        """``max |(H + shift·I)_ij|``, without forming the matrix where possible."""

    @abstractmethod
    def to_dense(self) -> torch.Tensor:
        """The explicit ``(N, N)`` matrix. Callers must not modify it unless :attr:`owns_dense`
        says it is a fresh tensor."""

    @property
    @abstractmethod
    def owns_dense(self) -> bool:
        """Whether :meth:`to_dense` returns a fresh tensor (safe to modify in place)."""

    @abstractmethod
    def all_finite(self) -> bool:
        """Whether every stored entry is finite."""


class DenseBlock(CurvatureBlock):
    """An explicit symmetric ``(N, N)`` matrix."""

    def __init__(self, name: str, kind: str, matrix: torch.Tensor, *, psd: bool = False) -> None:
        if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 or (
                matrix.shape[0] != matrix.shape[1]):
            shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix)
            raise ValueError(f"matrix must be a square (N, N) tensor, got {shape}")
        self.name, self.kind, self.psd = name, kind, bool(psd)
        self.matrix = matrix

    def __repr__(self) -> str:
        return f"DenseBlock(name={self.name!r}, kind={self.kind!r}, n={self.n}, psd={self.psd})"

    @property
    def n(self) -> int:
        return int(self.matrix.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.matrix.dtype

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matrix @ v

    def diagonal(self) -> torch.Tensor:
        return self.matrix.diagonal().clone()

    def max_abs_entry(self, shift: float = 0.0) -> float:
        if shift == 0.0:
            return float(self.matrix.abs().max())
        shifted = self.matrix.clone()
        shifted.diagonal().add_(shift)
        return float(shifted.abs().max())

    def to_dense(self) -> torch.Tensor:
        return self.matrix

    @property
    def owns_dense(self) -> bool:
        return False

    def all_finite(self) -> bool:
        return bool(torch.isfinite(self.matrix).all())


class FactorBlock(CurvatureBlock):
    """``H = scale · Fᵀ F`` with ``F`` of shape ``(M, N)``; positive semidefinite by construction.

    The diagonal is computed once and cached (``F`` is not modified after construction).
    """

    def __init__(self, name: str, kind: str, factor: torch.Tensor, scale: float = 1.0) -> None:
        if not isinstance(factor, torch.Tensor) or factor.ndim != 2:
            shape = tuple(factor.shape) if isinstance(factor, torch.Tensor) else type(factor)
            raise ValueError(f"factor must be an (M, N) tensor, got {shape}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (scale·FᵀF is then PSD), got {scale}")
        self.name, self.kind, self.psd = name, kind, True
        self.factor = factor
        self.scale = float(scale)
        self._diagonal: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (f"FactorBlock(name={self.name!r}, kind={self.kind!r}, rows={self.factor_rows}, "
                f"n={self.n}, scale={self.scale:g})")

    @property
    def n(self) -> int:
        return int(self.factor.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.factor.dtype

    @property
    def device(self) -> torch.device:
        return self.factor.device

    @property
    def factor_rows(self) -> int:
        return int(self.factor.shape[0])

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.factor.T @ (self.factor @ v))

    def diagonal(self) -> torch.Tensor:
        if self._diagonal is None:
            self._diagonal = self.scale * (self.factor * self.factor).sum(dim=0)
        return self._diagonal.clone()

    def max_abs_entry(self, shift: float = 0.0) -> float:
        # PSD: |H_ij| ≤ √(H_ii H_jj), so the largest entry is on the diagonal.
        if self._diagonal is None:
            self.diagonal()
        if shift == 0.0:
            return float(self._diagonal.max())
        return float((self._diagonal + shift).abs().max())

    def to_dense(self) -> torch.Tensor:
        return self.scale * (self.factor.T @ self.factor)

    @property
    def owns_dense(self) -> bool:
        return True

    def all_finite(self) -> bool:
        return bool(torch.isfinite(self.factor).all())
