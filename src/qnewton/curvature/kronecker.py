"""Kronecker-factored blocks ``G ⊗ A`` of one Linear or convolution layer (K-FAC).

For a layer ``z = W ā`` with ``W`` of shape ``(d_out, d_a)`` (the bias as the last column of
``W`` when ``ā = [a; 1]``, Martens & Grosse 2015 §3 "homogeneous coordinates"), the gradient of
one sample at one position is ``δ āᵀ``, and its row-major flattening is ``δ ⊗ ā``. So the
Kronecker approximation of the Fisher of the layer in **row-major (out, in) order** — the order
of ``W.reshape(-1)`` — is ``G ⊗ A`` with ``G = E[δ δᵀ]`` (``d_out × d_out``) and
``A = E[ā āᵀ]`` (``d_a × d_a``); and ``(G ⊗ A)·vec(V) = vec(G V A)`` for ``V`` of shape
``(d_out, d_a)`` (both factors symmetric).

The block's parameter vector is the concatenation of its tensors' ``reshape(-1)``
(:mod:`qnewton.curvature.params`): weight then bias (or bias then weight), not the interleaved
``vec([W | b])``. :meth:`KroneckerBlock.to_matrix` / :meth:`~KroneckerBlock.from_matrix` convert
between the two, so every product, the diagonal and the explicit matrix are in the block's order.
"""

from __future__ import annotations

import torch

from qnewton.curvature.finite import finite_sum
from qnewton.curvature.representation import ARITHMETIC_DTYPE, CurvatureBlock


class KroneckerBlock(CurvatureBlock):
    """``H = P (G ⊗ A) Pᵀ``: ``G`` ``(d_out, d_out)``, ``A`` ``(d_a, d_a)``, both PSD, and P the
    permutation from ``vec([W | b])`` (row-major) to the block's flattening order.

    Args:
        name, kind: as every block.
        a: the input factor ``(d_a, d_a)``; with a bias the last coordinate is the appended 1.
        g: the output-gradient factor ``(d_out, d_out)``.
        weight_first: ``True`` for a block ``(weight, bias)``, ``False`` for ``(bias, weight)``
            (ignored without one of them).
        has_weight, has_bias: which of the layer's tensors the block holds (a bias-only block
            has ``d_a = 1``, a weight-only block no appended coordinate).
        damping: ``(γ_A, γ_G)`` already added to the factors' diagonals (the π-split of
            :mod:`qnewton.conditioning.kronecker`), for records; ``(0, 0)`` for built curvature.

    The eigendecompositions of the factors are computed once on first need (:meth:`eig`) and
    kept; a damped copy (:meth:`damped`) shares them (same eigenvectors, eigenvalues + γ).
    """

    representation = "kronecker"

    def __init__(self, name: str, kind: str, a: torch.Tensor, g: torch.Tensor, *,
                 has_weight: bool = True, has_bias: bool = False, weight_first: bool = True,
                 damping: tuple[float, float] = (0.0, 0.0)) -> None:
        for label, f in (("a", a), ("g", g)):
            if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != f.shape[1]:
                raise ValueError(f"{label} must be a square matrix, got "
                                 f"{tuple(f.shape) if isinstance(f, torch.Tensor) else type(f)}")
        if not (has_weight or has_bias):
            raise ValueError("a Kronecker block holds a weight, a bias or both")
        if not has_weight and a.shape[0] != 1:
            raise ValueError(f"a bias-only block has a 1×1 input factor, got {tuple(a.shape)}")
        self.name, self.kind, self.psd = name, kind, True
        self.a, self.g = a.to(ARITHMETIC_DTYPE), g.to(ARITHMETIC_DTYPE)
        self.has_weight, self.has_bias = bool(has_weight), bool(has_bias)
        self.weight_first = bool(weight_first)
        self.damping = (float(damping[0]), float(damping[1]))
        self._eig: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        #: (the undamped block, γ_A, γ_G) for a damped copy: its eigendecompositions are the
        #: base's (computed and kept there, so a block reused across steps factors once)
        self._base: tuple[KroneckerBlock, float, float] | None = None

    def __repr__(self) -> str:
        return (f"KroneckerBlock(name={self.name!r}, kind={self.kind!r}, d_out={self.d_out}, "
                f"d_a={self.d_a}, bias={self.has_bias})")

    @property
    def d_out(self) -> int:
        return int(self.g.shape[0])

    @property
    def d_a(self) -> int:
        return int(self.a.shape[0])

    @property
    def kronecker_dims(self) -> tuple[int, int]:
        """``(d_a, d_out)``, the sizes of the two factors."""
        return self.d_a, self.d_out

    @property
    def n(self) -> int:
        return self.d_out * self.d_a  # W is (d_out, d_a − 1) and b is (d_out,) with a bias

    @property
    def dtype(self) -> torch.dtype:
        return ARITHMETIC_DTYPE

    @property
    def device(self) -> torch.device:
        return self.a.device

    # -- the permutation between the block's order and vec([W | b]) ---------------------------
    def to_matrix(self, v: torch.Tensor) -> torch.Tensor:
        """``V`` of shape ``(k, d_out, d_a)`` from ``v`` ``(N,)`` or ``(N, k)`` in block order."""
        cols = v.reshape(self.n, -1).T  # (k, N)
        k = cols.shape[0]
        if not (self.has_weight and self.has_bias):
            return cols.reshape(k, self.d_out, self.d_a)
        nw = self.d_out * (self.d_a - 1)
        w, b = (cols[:, :nw], cols[:, nw:]) if self.weight_first else (
            cols[:, self.d_out:], cols[:, :self.d_out])
        return torch.cat([w.reshape(k, self.d_out, self.d_a - 1), b.unsqueeze(2)], dim=2)

    def from_matrix(self, m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_matrix`, shaped like ``like`` (``(N,)`` or ``(N, k)``)."""
        k = m.shape[0]
        if not (self.has_weight and self.has_bias):
            flat = m.reshape(k, -1)
        else:
            w, b = m[:, :, :-1].reshape(k, -1), m[:, :, -1]
            flat = torch.cat([w, b] if self.weight_first else [b, w], dim=1)
        return flat.T.reshape(like.shape)

    # -- the CurvatureBlock interface ----------------------------------------------------------
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        m = self.to_matrix(v.to(self.dtype))
        return self.from_matrix(self.g @ m @ self.a, v)

    def diagonal(self) -> torch.Tensor:
        d = torch.outer(self.g.diagonal(), self.a.diagonal()).unsqueeze(0)
        return self.from_matrix(d, torch.empty(self.n, dtype=self.dtype))

    def max_abs_entry(self, shift: float = 0.0) -> float:
        # PSD: the largest entry is on the diagonal (|H_ij| ≤ √(H_ii H_jj)).
        return float((self.diagonal() + shift).abs().max())

    def to_dense(self) -> torch.Tensor:
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        return self.matvec(eye)

    @property
    def owns_dense(self) -> bool:
        return True

    def all_finite(self) -> bool:
        return finite_sum(self.a) and finite_sum(self.g)

    # -- structure the Kronecker solver and κ use ----------------------------------------------
    def eig(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(λ_A, Q_A, λ_G, Q_G)``, eigenvalues ascending and clamped at 0 (the factors are PSD;
        round-off can make the smallest slightly negative), computed once."""
        if self._eig is None and self._base is not None:
            base, gamma_a, gamma_g = self._base
            la, qa, lg, qg = base.eig()
            self._eig = (la + gamma_a, qa, lg + gamma_g, qg)
        if self._eig is None:
            la, qa = torch.linalg.eigh(self.a)
            lg, qg = torch.linalg.eigh(self.g)
            self._eig = (la.clamp_min(0.0), qa, lg.clamp_min(0.0), qg)
        return self._eig

    @property
    def has_eig(self) -> bool:
        """Whether :meth:`eig` is already computed, here or on the undamped block (a solve then
        costs two matmul pairs)."""
        return self._eig is not None or (self._base is not None and self._base[0].has_eig)

    def damped(self, gamma_a: float, gamma_g: float) -> KroneckerBlock:
        """``(A + γ_A I) ⊗ (G + γ_G I)`` as a new block (sharing this block's eigenvectors)."""
        a, g = self.a.clone(), self.g.clone()
        a.diagonal().add_(gamma_a)
        g.diagonal().add_(gamma_g)
        out = KroneckerBlock(self.name, self.kind, a, g, has_weight=self.has_weight,
                             has_bias=self.has_bias, weight_first=self.weight_first,
                             damping=(self.damping[0] + gamma_a, self.damping[1] + gamma_g))
        out._base = (self, gamma_a, gamma_g) if self._base is None else (
            self._base[0], self._base[1] + gamma_a, self._base[2] + gamma_g)
        return out

    def shifted_solve(self, b: torch.Tensor, shift: float) -> torch.Tensor:
        """``(H + shift·I)⁻¹ b`` exactly, for ``b`` ``(N,)`` or ``(N, k)``: with ``H = P (Q_G ⊗ Q_A)
        (Λ_G ⊗ Λ_A)(Q_G ⊗ Q_A)ᵀ Pᵀ``, ``X = Q_G [(Q_Gᵀ V Q_A) ⊘ (λ_G λ_Aᵀ + shift)] Q_Aᵀ``."""
        la, qa, lg, qg = self.eig()
        m = self.to_matrix(b.to(self.dtype))
        inner = (qg.T @ m @ qa) / (torch.outer(lg, la) + shift)
        return self.from_matrix(qg @ inner @ qa.T, b)

    def eigenvalue_range(self) -> tuple[float, float]:
        """``(λ_min, λ_max)`` of ``H`` (products of the factors' extreme eigenvalues: both PSD)."""
        la, _, lg, _ = self.eig()
        return float(la[0] * lg[0]), float(la[-1] * lg[-1])
