"""Curvature block representations: how one symmetric N×N block is held in memory.

A block is the curvature of the loss with respect to one parameter block. Three representations
exist, all behind the small :class:`CurvatureBlock` interface the rest of the pipeline uses
(size, dtype, matrix-vector products, diagonal, largest entry, the explicit matrix):

* :class:`DenseBlock` — an explicit ``(N, N)`` matrix (the exact Hessian);
* :class:`FactorBlock` — ``scale · Fᵀ F`` with ``F ∈ R^{M×N}`` (the empirical Fisher, ``M = S``
  per-sample gradients, and the GGN, ``M = S·C`` rows). It is never formed as an N×N matrix
  unless a dense solver asks for it; Woodbury and CG use the factor.
* :class:`MatrixFreeBlock` — nothing stored: only products ``v ↦ H v`` on the closure's graph
  (:mod:`qnewton.curvature.products`), for blocks whose dense or factor form would exceed the
  memory budget. Only CG can solve it; its explicit matrix is refused.

``psd`` says whether the block is known to be positive semidefinite, which the conditioning and
the κ bounds rely on (docs/method.md §4.2, §4.6); it is set by the curvature kind that built it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from qnewton.curvature.finite import finite_sum
from qnewton.curvature.memory import DEFAULT_CHUNK_BYTES, element_size

#: The dtype every block computes in (products, diagonal, explicit matrix, Gram matrix), whatever
#: the dtype it is stored in: a float32 factor keeps half the memory while the systems built from
#: it are solved in float64 (docs/method.md §4.7, "Storage and arithmetic dtypes").
ARITHMETIC_DTYPE = torch.float64


def arithmetic_dtype(stored: torch.dtype) -> torch.dtype:
    """The dtype a block stored in ``stored`` computes in (float64, or wider)."""
    return torch.promote_types(stored, ARITHMETIC_DTYPE)


def dense_block_bytes(n: int, dtype: torch.dtype = torch.float64) -> int:
    """Memory in bytes of one dense N×N block of ``dtype``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n * n * torch.empty((), dtype=dtype).element_size()


@dataclass(frozen=True)
class FactorCosts:
    """Flops of the three factor operations the solvers' time models price (docs/method.md
    §4.5), for a factor held by its structure; an explicit ``(M, N)`` factor costs ``2·M·N``,
    ``2·N·M²`` and ``2·M·N²``.

    Attributes:
        product: one ``F v`` (or ``Fᵀ u``). gram: ``F Fᵀ``. normal: ``FᵀF``.
        pieces: the column pieces (and dense rows) each operation loops over: a few small
            tensor operations each, which is what a product costs on small blocks (the time
            models price each piece like one CG iteration's fixed overhead).
    """

    product: float
    gram: float
    normal: float
    pieces: int = 1

    def __add__(self, other: FactorCosts) -> FactorCosts:
        return FactorCosts(self.product + other.product, self.gram + other.gram,
                           self.normal + other.normal, self.pieces + other.pieces)


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
    #: Whether only products are available (no entries): see :class:`MatrixFreeBlock`.
    matrix_free: bool = False
    #: The representation's name in solve records (``"dense"``, ``"factor"``, ...).
    representation: str = "dense"
    #: The flops of its factor operations when they are not those of explicit rows
    #: (:class:`FactorCosts`; ``None``: priced by M and N, or not a factor).
    costs: FactorCosts | None = None
    #: ``(run settings, ‖H‖₂ upper bound)`` from an earlier κ analysis of this very block (set
    #: by :func:`~qnewton.estimation.analyse_kappa`): a block reused across steps
    #: (``curvature_every``) is the same H, and the same seeded Lanczos run would give the same
    #: probabilistic bound, so it is kept instead of run again (``None``: none yet).
    norm_upper: tuple[tuple[Any, ...], float] | None = None

    @property
    def has_diagonal(self) -> bool:
        """Whether :meth:`diagonal` is available."""
        return True

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

    @property
    def kronecker_dims(self) -> tuple[int, int] | None:
        """``(d_a, d_out)`` for a Kronecker-factored block ``G ⊗ A`` (kept structured by
        conditioning and solved from its factors), else ``None``."""
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
        """Whether every stored entry is finite, judged from one scalar (a sum, :mod:`~qnewton.
        curvature.finite`), so an overflowing block is reported as not finite too."""


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
        return arithmetic_dtype(self.matrix.dtype)

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matrix.to(self.dtype) @ v

    def diagonal(self) -> torch.Tensor:
        return self.matrix.diagonal().to(self.dtype, copy=True)

    def max_abs_entry(self, shift: float = 0.0) -> float:
        if shift == 0.0:
            return float(self.matrix.abs().max())
        shifted = self.matrix.clone()
        shifted.diagonal().add_(shift)
        return float(shifted.abs().max())

    def to_dense(self) -> torch.Tensor:
        return self.matrix.to(self.dtype)  # the stored matrix itself when already float64

    @property
    def owns_dense(self) -> bool:
        return self.matrix.dtype != self.dtype

    def all_finite(self) -> bool:
        return finite_sum(self.matrix)


class FactorBlock(CurvatureBlock):
    """``H = scale · Fᵀ F`` with ``F`` of shape ``(M, N)``; positive semidefinite by construction.

    The diagonal is computed once and cached (``F`` is not modified after construction). ``F``
    may be stored narrower than float64 (a float32 model's rows): every product, the diagonal,
    the explicit matrix and the Gram matrix are then computed in float64 from float64 copies of
    chunks of ``F`` (exact products of the stored values), and :attr:`dtype` says float64.
    """

    def __init__(self, name: str, kind: str, factor: torch.Tensor, scale: float = 1.0) -> None:
        if not isinstance(factor, torch.Tensor) or factor.ndim != 2:
            shape = tuple(factor.shape) if isinstance(factor, torch.Tensor) else type(factor)
            raise ValueError(f"factor must be an (M, N) tensor, got {shape}")
        self._start(name, kind, scale)
        self.representation = "factor"
        self.factor = factor

    def _start(self, name: str, kind: str, scale: float) -> None:
        """What every factor block holds besides its rows (subclasses hold them otherwise)."""
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (scale·FᵀF is then PSD), got {scale}")
        self.name, self.kind, self.psd = name, kind, True
        self.scale = float(scale)
        self._diagonal: torch.Tensor | None = None
        self._gram: torch.Tensor | None = None
        #: keep the explicit matrix once formed (a block reused across steps, set by
        #: :class:`~qnewton.curvature.schedule.CurvatureSchedule`): every reusing step's dense
        #: solve then copies it instead of forming scale·FᵀF again
        self.keep_dense = False
        self._dense: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, "
                f"rows={self.factor_rows}, n={self.n}, scale={self.scale:g})")

    @property
    def n(self) -> int:
        return int(self.factor.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return arithmetic_dtype(self.factor.dtype)

    @property
    def storage_dtype(self) -> torch.dtype:
        """The dtype ``F`` is stored in (may be narrower than :attr:`dtype`)."""
        return self.factor.dtype

    @property
    def device(self) -> torch.device:
        return self.factor.device

    @property
    def factor_rows(self) -> int:
        return int(self.factor.shape[0])

    @property
    def _wide(self) -> bool:
        return self.factor.dtype == self.dtype

    def _chunks(self, dim: int) -> list[tuple[int, int]]:
        """Row (``dim=0``) or column ranges whose float64 copies fit DEFAULT_CHUNK_BYTES."""
        size = self.factor.shape[dim]
        other = self.factor.shape[1 - dim]
        k = max(1, DEFAULT_CHUNK_BYTES // max(1, other * element_size(self.dtype)))
        return [(i, min(size, i + k)) for i in range(0, size, k)]

    def apply_factor(self, v: torch.Tensor) -> torch.Tensor:
        """``F v`` in :attr:`dtype` (``v``: ``(N,)`` or ``(N, k)``)."""
        if self._wide:
            return self.factor @ v
        return torch.cat([self.factor[a:b].to(self.dtype) @ v for a, b in self._chunks(0)])

    def apply_factor_t(self, u: torch.Tensor) -> torch.Tensor:
        """``Fᵀ u`` in :attr:`dtype` (``u``: ``(M,)`` or ``(M, k)``)."""
        if self._wide:
            return self.factor.T @ u
        return sum(self.factor[a:b].to(self.dtype).T @ u[a:b] for a, b in self._chunks(0))

    def gram(self, keep: bool = False) -> torch.Tensor:
        """``F Fᵀ`` (M×M) in :attr:`dtype`; with ``keep`` it is kept with the block, so every
        system built from the block — at later steps too, when the curvature is reused
        (:mod:`~qnewton.curvature.schedule`) — shares one ``2·N·M²``-flop product
        (:meth:`qnewton.system.LinearSystem.gram` keeps it)."""
        if self._gram is not None:
            return self._gram
        gram = self._form_gram()
        if keep:
            self._gram = gram
        return gram

    def _form_gram(self) -> torch.Tensor:
        """``F Fᵀ`` formed now (:meth:`gram` keeps it)."""
        if self._wide:
            return self.factor @ self.factor.T
        parts = (self.factor[:, a:b].to(self.dtype) for a, b in self._chunks(1))
        return sum(c @ c.T for c in parts)

    @property
    def has_gram(self) -> bool:
        """Whether a kept :meth:`gram` exists (forming it again costs nothing)."""
        return self._gram is not None

    def drop_gram(self) -> None:
        """Forget the kept :meth:`gram`."""
        self._gram = None

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        if self._wide:
            return self.scale * (self.factor.T @ (self.factor @ v))
        return self.scale * self.apply_factor_t(self.apply_factor(v))

    def diagonal(self) -> torch.Tensor:
        if self._diagonal is None:
            if self._wide:
                self._diagonal = self.scale * (self.factor * self.factor).sum(dim=0)
            else:
                self._diagonal = self.scale * sum(
                    self.factor[a:b].to(self.dtype).square().sum(dim=0)
                    for a, b in self._chunks(0))
        return self._diagonal.clone()

    def max_abs_entry(self, shift: float = 0.0) -> float:
        # PSD: |H_ij| ≤ √(H_ii H_jj), so the largest entry is on the diagonal.
        if self._diagonal is None:
            self.diagonal()
        if shift == 0.0:
            return float(self._diagonal.max())
        return float((self._diagonal + shift).abs().max())

    def to_dense(self) -> torch.Tensor:
        if self._dense is not None:
            return self._dense
        dense = self._form_dense()
        if self.keep_dense:
            self._dense = dense
        return dense

    def _form_dense(self) -> torch.Tensor:
        """``scale·FᵀF`` formed now (:meth:`to_dense` keeps it when :attr:`keep_dense`)."""
        if self._wide:
            return self.scale * (self.factor.T @ self.factor)
        parts = (self.factor[a:b].to(self.dtype) for a, b in self._chunks(0))
        return self.scale * sum(c.T @ c for c in parts)

    @property
    def owns_dense(self) -> bool:
        return not self.keep_dense

    def all_finite(self) -> bool:
        # trace(H) = scale·‖F‖²_F, the sum of the cached diagonal that the max-entry
        # regularization reads anyway: no extra pass over F.
        if self._diagonal is None:
            self.diagonal()
        return finite_sum(self._diagonal)


class MatrixFreeError(RuntimeError):
    """Something that needs the entries of a matrix-free block (its explicit matrix, or a
    diagonal it does not offer), or a curvature-vector product that failed."""


class MatrixFreeBlock(CurvatureBlock):
    """``H`` known only through products ``v ↦ H v`` (docs/method.md §4.7, "Matrix-free blocks").

    Nothing of size N² or S·N is stored: the block holds the closure's autograd graph (released
    with the block) and computes each product with two backward passes
    (:mod:`qnewton.curvature.products`).

    * :meth:`to_dense` is refused (:class:`MatrixFreeError`): the matrix is what did not fit.
      :meth:`columns` builds chosen columns on request (one product each), for tests and small
      diagnostics only.
    * :meth:`diagonal`: exact where the building kind supplies it cheaply (Fisher, GGN: squared
      factor rows summed chunk by chunk, the cost of one per-sample pass); otherwise refused.
    * :meth:`max_abs_entry`: **exact** for a PSD block with a diagonal (the largest entry of a PSD
      matrix is on its diagonal); otherwise an **upper bound**, ``‖H‖₂ + |shift|`` (``|Aᵢⱼ| ≤
      ‖A‖₂``), once conditioning has supplied an upper bound on ``‖H‖₂``
      (:meth:`set_spectral_bounds`). :attr:`max_entry_kind` says which.
    * ``rank_bound``: an upper bound on the rank of ``H`` (S for the Fisher, S·C for the GGN), or
      ``None``; CG on ``H + λI`` then needs at most ``rank_bound + 1`` iterations in exact
      arithmetic.
    """

    matrix_free = True
    representation = "matrix-free"

    def __init__(self, name: str, kind: str, product: Callable[[torch.Tensor], torch.Tensor],
                 n: int, *, dtype: torch.dtype, device: torch.device | str, psd: bool,
                 diagonal: Callable[[], torch.Tensor] | None = None,
                 rank_bound: int | None = None) -> None:
        if not callable(product):
            raise ValueError("product must be callable: v (N,) -> H v (N,)")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        self.name, self.kind, self.psd = name, kind, bool(psd)
        self._product, self._n, self._dtype = product, n, dtype
        self._device = torch.device(device)
        self._diagonal_fn = diagonal
        self._diagonal: torch.Tensor | None = None
        self.rank_bound = rank_bound
        #: (lower bound on λ_min(H), upper bound on ‖H‖₂), set once by conditioning.
        self.spectral_bounds: tuple[float, float] | None = None
        self.products = 0  # curvature-vector products computed so far

    def __repr__(self) -> str:
        return (f"MatrixFreeBlock(name={self.name!r}, kind={self.kind!r}, n={self.n}, "
                f"psd={self.psd})")

    @property
    def n(self) -> int:
        return self._n

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        if v.ndim == 2:
            return torch.stack([self.matvec(v[:, j]) for j in range(v.shape[1])], dim=1)
        if v.shape != (self.n,):
            raise ValueError(f"v must have shape ({self.n},) or ({self.n}, k), got "
                             f"{tuple(v.shape)}")
        try:
            out = self._product(v.to(self._dtype))
        except RuntimeError as exc:
            raise MatrixFreeError(
                f"curvature-vector product of matrix-free block {self.name!r} failed: {exc}"
            ) from exc
        self.products += 1
        return out.to(v.dtype)

    @property
    def has_diagonal(self) -> bool:
        """Whether :meth:`diagonal` is available (exact) for this block."""
        return self._diagonal_fn is not None

    def diagonal(self) -> torch.Tensor:
        if self._diagonal_fn is None:
            raise MatrixFreeError(
                f"the diagonal of matrix-free {self.kind} block {self.name!r} is not available "
                f"(it would take N = {self.n} curvature-vector products; use columns())"
            )
        if self._diagonal is None:
            try:
                self._diagonal = self._diagonal_fn()
            except RuntimeError as exc:
                raise MatrixFreeError(
                    f"diagonal of matrix-free block {self.name!r} failed: {exc}") from exc
        return self._diagonal.clone()

    @property
    def max_entry_kind(self) -> str | None:
        """``"exact"`` or ``"upper"`` (what :meth:`max_abs_entry` returns), or ``None`` while
        no figure is available (a non-PSD block before :meth:`set_spectral_bounds`)."""
        if self.psd and self.has_diagonal:
            return "exact"
        return "upper" if self.spectral_bounds is not None else None

    def set_spectral_bounds(self, min_eig_lower: float, norm_upper: float) -> None:
        """Record a lower bound on λ_min(H) and an upper bound on ‖H‖₂ (from Lanczos)."""
        self.spectral_bounds = (float(min_eig_lower), float(norm_upper))

    def max_abs_entry(self, shift: float = 0.0) -> float:
        """Exact for a PSD block with a diagonal, else the upper bound ``‖H‖₂ + |shift|``."""
        if self.psd and self.has_diagonal:
            diag = self.diagonal()
            return float(diag.max()) if shift == 0.0 else float((diag + shift).abs().max())
        if self.spectral_bounds is None:
            raise MatrixFreeError(
                f"max|H_ij| of matrix-free block {self.name!r} needs an upper bound on ‖H‖₂ "
                "first (set_spectral_bounds; conditioning sets it)"
            )
        return self.spectral_bounds[1] + abs(shift)

    def columns(self, start: int, stop: int) -> torch.Tensor:
        """Columns ``start:stop`` of ``H`` (``(N, stop − start)``), one product each."""
        if not 0 <= start <= stop <= self.n:
            raise ValueError(f"need 0 <= start <= stop <= {self.n}, got {start}, {stop}")
        eye = torch.zeros((self.n, stop - start), dtype=self._dtype, device=self._device)
        eye[torch.arange(start, stop), torch.arange(stop - start)] = 1
        return self.matvec(eye)

    def to_dense(self) -> torch.Tensor:
        raise MatrixFreeError(
            f"block {self.name!r} is matrix-free: its {self.n}×{self.n} matrix exceeded the "
            "memory budget (max_block_bytes) and is never formed; only products (CG) apply"
        )

    @property
    def owns_dense(self) -> bool:
        return True

    def all_finite(self) -> bool:
        """Nothing is stored, so nothing to check: a non-finite product surfaces as a failed
        solve (CG checks its result)."""
        return True
