"""The linear system ``A x = b`` that a solver receives, and the shape a cost model sees.

A :class:`LinearSystem` is the conditioned form of one curvature block (docs/method.md §4.6):
either the block itself plus a diagonal shift (``A = H + shift·I``, which keeps a factor-form block
usable by Woodbury and CG without forming N×N, and a matrix-free block usable by CG), or an
explicit conditioned matrix that already includes its shift (pruned or repaired blocks, exact
Hessians). Solvers, κ estimators and the scheduler use only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from qnewton.curvature.finite import finite_sum
from qnewton.curvature.representation import CurvatureBlock, FactorCosts


@dataclass
class LinearSystem:
    """``A = H' + shift·I`` for the block it came from.

    Attributes:
        block: the curvature block the system was derived from (name, kind, ``psd``).
        shift: total diagonal shift λ_total = regularization λ + repair shift (units of H).
        reg: the regularization λ (absolute units, same units as H).
        repair_shift: extra shift added to restore positive definiteness.
        dense: explicit ``(N, N)`` matrix A (shift *included*), or ``None``: then
            ``A = block + shift·I``.
        d: maximum number of nonzeros in a row of A (docs/method.md §4.1). nnz: nonzeros of A.
        pruned: whether magnitude pruning was applied.
        min_eig_bound: a guaranteed lower bound on λ_min(A) set by conditioning (the repair
            target of a repaired matrix), or ``None``: see :attr:`min_eig_lower`.
    """

    block: CurvatureBlock
    shift: float
    reg: float
    repair_shift: float = 0.0
    dense: torch.Tensor | None = None
    d: int = 0
    nnz: int = 0
    pruned: bool = False
    min_eig_bound: float | None = None
    _gram: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        return self.block.n

    @property
    def dtype(self) -> torch.dtype:
        return self.block.dtype

    @property
    def device(self) -> torch.device:
        return self.block.device

    @property
    def factor_rows(self) -> int | None:
        """M when ``A = scale·FᵀF + shift·I`` is available without an explicit matrix."""
        return self.block.factor_rows if self.dense is None else None

    @property
    def kronecker(self) -> tuple[int, int] | None:
        """``(d_a, d_out)`` when ``A = G ⊗ A_in + shift·I`` is held as its two Kronecker factors
        (:class:`~qnewton.curvature.kronecker.KroneckerBlock`), else ``None``."""
        return self.block.kronecker_dims if self.dense is None else None

    @property
    def matrix_free(self) -> bool:
        """True when A is known only through products (a matrix-free block plus its shift):
        :meth:`to_dense` is refused and only CG applies."""
        return self.dense is None and self.block.matrix_free

    @property
    def factor_form(self) -> bool:
        """True when A = scale·FᵀF + shift·I is available without an explicit matrix."""
        return self.factor_rows is not None

    @property
    def psd_plus_shift(self) -> bool:
        """Whether ``A − shift·I`` is known PSD with ``shift > 0``: then ``λ_min(A) ≥ shift`` and
        ``κ ≤ 1 + ‖H‖₂/shift`` (docs/method.md §4.2). Unpruned PSD curvature only."""
        return self.block.psd and not self.pruned and self.shift > 0.0

    @property
    def min_eig_lower(self) -> float:
        """A guaranteed lower bound on λ_min(A): what conditioning established, else ``shift``
        for PSD curvature plus a shift, else 0 (nothing known)."""
        if self.min_eig_bound is not None:
            return self.min_eig_bound
        return self.shift if self.psd_plus_shift else 0.0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for ``v`` of shape ``(N,)`` or ``(N, k)``."""
        if self.dense is not None:
            return self.dense @ v
        return self.block.matvec(v) + self.shift * v

    def to_dense(self) -> torch.Tensor:
        """The explicit ``(N, N)`` matrix A (do not modify it in place). Refused
        (:class:`~qnewton.curvature.representation.MatrixFreeError`) for a matrix-free system."""
        if self.dense is not None:
            return self.dense
        a = self.block.to_dense()
        if not self.block.owns_dense:
            a = a.clone()
        a.diagonal().add_(self.shift)
        return a

    def materialize(self) -> torch.Tensor:
        """The explicit matrix A even for a matrix-free system, built column by column there
        (N products, symmetrized): for diagnostics on small systems only, never for solving."""
        if not self.matrix_free:
            return self.to_dense()
        a = self.block.columns(0, self.n)
        a = (a + a.T) / 2
        a.diagonal().add_(self.shift)
        return a

    def gram(self, cache: bool = True) -> torch.Tensor:
        """``F Fᵀ``, shape ``(M, M)``, of a factor-form system, computed once and cached.

        Its eigenvalues times ``scale`` are the nonzero eigenvalues of the block (an exact κ when
        M is small), and Woodbury's capacitance matrix is built from it, so the scheduler's
        analysis and the solve share one ``2·N·M²``-flop product.
        """
        if not self.factor_form:
            raise ValueError("gram() needs a factor-form system (an unconditioned factor block)")
        if self._gram is not None:
            return self._gram
        # float64 even for a narrower stored factor; kept with the block (M² ≤ M·N, the factor's
        # own size, wherever Woodbury applies), so a block reused at later steps
        # (curvature_every) does not form it again
        gram = self.block.gram(keep=True)
        if cache:
            self._gram = gram
        return gram

    @property
    def has_gram(self) -> bool:
        """Whether :meth:`gram` has been computed, for this system or kept with its block (and a
        Woodbury solve will reuse it)."""
        return self._gram is not None or (self.factor_form and self.block.has_gram)

    def drop_gram(self) -> None:
        """Forget the Gram matrix cached by this system and kept with its block (to time a
        solve that must form it, as benchmarks do)."""
        self._gram = None
        if self.factor_form:
            self.block.drop_gram()

    def max_abs_entry(self) -> float:
        """``max |A_ij|`` without forming A where possible."""
        if self.dense is not None:
            return float(self.dense.abs().max())
        return self.block.max_abs_entry(self.shift)

    def all_finite(self) -> bool:
        """Whether every stored entry of A is finite (from one sum, :mod:`qnewton.curvature.
        finite`)."""
        return finite_sum(self.dense) if self.dense is not None else self.block.all_finite()


@dataclass(frozen=True)
class SystemShape:
    """What a time model needs to know about a system (no matrix): the input of every classical
    cost formula and of the scheduler's decision, shared by ``qnewton estimate``.

    Attributes:
        n: N. nnz: nonzeros of A (≤ N²). d: max nonzeros per row.
        kappa: condition number used for iteration counts (≥ 1).
        factor_rows: M when A is held as ``scale·FᵀF + shift·I`` (dense solvers then pay for
            forming A; Woodbury applies if ``shift_positive``), else ``None``.
        shift_positive: whether the diagonal shift is > 0.
        gram_formed: whether ``F Fᵀ`` was already formed (a Woodbury solve reuses it).
        matrix_free: whether A is known only through products (only CG applies).
        kronecker: ``(d_a, d_out)`` when A is a Kronecker block plus a shift (the Kronecker
            solver applies), else ``None``. kronecker_factored: whether its factors'
            eigendecompositions are already held (a block reused between K-FAC refreshes).
        factor_costs: the flops of ``F v``, ``F Fᵀ`` and ``FᵀF`` when the factor is held by its
            structure (Kronecker rows, :mod:`qnewton.curvature.structured`); ``None``: an
            explicit factor, priced by ``M`` and ``N``.
    """

    n: int
    nnz: int
    d: int
    kappa: float
    factor_rows: int | None = None
    shift_positive: bool = True
    gram_formed: bool = False
    matrix_free: bool = False
    kronecker: tuple[int, int] | None = None
    kronecker_factored: bool = False
    factor_costs: FactorCosts | None = None
