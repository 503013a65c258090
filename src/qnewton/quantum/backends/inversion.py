"""The QSVT inversion polynomial and what an ideal QSVT circuit outputs (docs/method.md §4.11).

A QSVT matrix inversion block-encodes ``A/α`` (α ≥ ‖A‖₂), so the spectrum it sees lies in
``[1/κ_eff, 1]`` with ``κ_eff = α/λ_min``, and applies an odd polynomial ``p`` with ``|p| ≤ 1`` on
``[−1, 1]`` and ``p(x) ≈ s/x`` on ``[1/κ_eff, 1]``. The post-selected output state is
``p(A/α)b / ‖p(A/α)b‖``, reached with success probability ``P = ‖p(A/α)b̂‖²``.

The polynomial (Childs, Kothari, Somma, arXiv 1511.02306 §3; Gilyén, Su, Low, Wiebe,
arXiv 1806.01838 Cor. 69; Martyn, Rossi, Tan, Chuang, arXiv 2105.02859 §IV.C) is the Chebyshev
truncation of ``f(x) = (1 − e^{−(βx)²})/x`` with ``β = κ_eff·√ln(4/ε)``: ``|f(x)·x − 1| ≤ ε/4`` on
``[1/κ_eff, 1]``; the truncation degree D is the smallest odd degree whose dropped coefficients
sum to at most ε/2, so ``|p(x)·x/s − 1| ≤ 3ε/4`` there (a guaranteed bound, :attr:`bound`).
Everything is computed in the Chebyshev basis: monomial coefficients of a degree-200 polynomial
are of order 2¹⁹⁹ and cancel catastrophically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import torch

from qnewton.estimation.dense import gershgorin_upper
from qnewton.quantum.qlsa.qsvt import GAUSS_PEAK  # max_u (1 − e^{−u²})/u, shared with the model
from qnewton.solvers.base import SolveError
from qnewton.system import LinearSystem
from qnewton.validation import check_int, check_open_unit, check_real

#: Largest inversion degree built (≈ κ_eff = 2e4 at ε = 1e-2): the Chebyshev transform uses
#: ~16β nodes, so larger κ_eff costs seconds per polynomial and D matvecs per solve.
MAX_DEGREE = 400_000


#: κ_eff is rounded up to the grid 2^{k/8} before a polynomial is built (at most 9% larger, still
#: a valid bound), so polynomials and circuit phases are reused across solves and steps.
KAPPA_GRID_PER_OCTAVE = 8


def grid_kappa(kappa_eff: float) -> float:
    """κ_eff rounded up to the grid ``2^{k/8}`` (:data:`KAPPA_GRID_PER_OCTAVE`)."""
    kappa_eff = check_real("kappa_eff", kappa_eff, low=1.0)
    steps = math.ceil(math.log2(kappa_eff) * KAPPA_GRID_PER_OCTAVE - 1e-12)
    return max(1.0, 2.0 ** (steps / KAPPA_GRID_PER_OCTAVE))


@dataclass(frozen=True)
class InversePolynomial:
    """An odd polynomial ``p(x) = Σ_k c_k T_k(x)`` with ``|p| ≤ 1`` on [−1, 1] and
    ``p(x) ≈ scale/x`` on [1/κ_eff, 1].

    Attributes:
        kappa_eff: κ_eff = α/λ_min the polynomial is built for. eps: target ε.
        beta: β = κ_eff·√ln(4/ε). degree: D (odd). coefficients: c_0 … c_D (even ones 0).
        scale: s. bound: guaranteed max of |p(x)·x/s − 1| on [1/κ_eff, 1] (≤ 3ε/4).
    """

    kappa_eff: float
    eps: float
    beta: float
    degree: int
    coefficients: np.ndarray
    scale: float
    bound: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return np.polynomial.chebyshev.chebval(x, self.coefficients)

    @property
    def qsvt_formula(self) -> float:
        """The ``qsvt`` query model's degree κ_eff·ln(κ_eff/ε) (docs/method.md §4.3)."""
        return self.kappa_eff * math.log(self.kappa_eff / self.eps)


def _f(x: np.ndarray, beta: float) -> np.ndarray:
    return -np.expm1(-((beta * x) ** 2)) / x


def inverse_polynomial(kappa_eff: float, eps: float) -> InversePolynomial:
    """The inversion polynomial for ``(κ_eff, ε)``, built once per pair in this process."""
    kappa_eff = check_real("kappa_eff", kappa_eff, low=1.0)
    eps = check_open_unit("eps", eps)
    return _inverse_polynomial(kappa_eff, eps)


@lru_cache(maxsize=64)
def _inverse_polynomial(kappa_eff: float, eps: float) -> InversePolynomial:
    beta = kappa_eff * math.sqrt(math.log(4.0 / eps))
    # Coefficients of f decay like e^{−k²/(4β²)}: ~12β of them reach machine precision; 16β
    # nodes leave the aliasing error far below ε.
    m = 1 << max(6, math.ceil(math.log2(16 * beta + 64)))
    if m // 2 > 4 * MAX_DEGREE:
        raise SolveError(f"QSVT inversion polynomial for kappa_eff={kappa_eff:.4g} would exceed "
                         f"degree {MAX_DEGREE}; route this block classically")
    nodes = np.cos((np.arange(m) + 0.5) * np.pi / m)  # first kind: no node at x = 0
    coeffs = scipy.fft.dct(_f(nodes, beta), type=2) / m
    coeffs[0] /= 2
    coeffs[::2] = 0.0  # f is odd
    tails = np.abs(coeffs)[::-1].cumsum()[::-1]  # tails[k] = Σ_{j ≥ k} |c_j|
    tails = np.append(tails, 0.0)
    target = eps / 2
    odd = np.arange(1, m, 2)
    fits = odd[tails[odd + 1] <= target]
    if fits.size == 0:
        raise SolveError(f"inversion polynomial did not converge for kappa_eff={kappa_eff:.4g}")
    degree = int(fits[0])
    if degree > MAX_DEGREE:
        raise SolveError(f"QSVT inversion polynomial for kappa_eff={kappa_eff:.4g}, eps={eps:g} "
                         f"needs degree {degree} > {MAX_DEGREE}; route this block classically")
    tail = float(tails[degree + 1])
    scale = 1.0 / (beta * GAUSS_PEAK + tail)
    return InversePolynomial(
        kappa_eff=kappa_eff, eps=eps, beta=beta, degree=degree,
        coefficients=coeffs[: degree + 1] * scale, scale=scale, bound=eps / 4 + tail)


def apply_chebyshev(coefficients: np.ndarray,
                    matvec: Callable[[torch.Tensor], torch.Tensor],
                    b: torch.Tensor) -> torch.Tensor:
    """``Σ_k c_k T_k(M) b`` by the three-term recurrence ``T_{k+1} = 2M T_k − T_{k−1}``: one
    product with M per degree (D in all), stable for a spectrum in [−1, 1]."""
    prev, cur = b, matvec(b)
    out = coefficients[0] * prev + coefficients[1] * cur
    for c in coefficients[2:]:
        prev, cur = cur, 2 * matvec(cur) - prev
        if c != 0.0:
            out = out + float(c) * cur
    return out


def amplification_runs(success_probability: float) -> int:
    """Circuit applications for amplitude amplification to succeed: ``2k + 1`` with
    ``k = ⌊π/(4θ)⌋``, ``sin θ = √P`` (Brassard, Høyer, Mosca, Tapp, quant-ph/0005055 Thm 2);
    1 when P ≥ 1/2, where one run already succeeds more often than not."""
    p = check_real("success_probability", success_probability, low=0.0, high=1.0)
    if p <= 0:
        raise SolveError("the QSVT output has success probability 0")
    if p >= 0.5:
        return 1
    theta = math.asin(math.sqrt(p))
    return 2 * math.floor(math.pi / (4 * theta)) + 1


@dataclass(frozen=True)
class SpectralBounds:
    """The interval a block-encoding of ``A/alpha`` puts the spectrum in.

    ``alpha``: the block-encoding normalization in A's units, √‖A·Aᵀ‖_∞ ≥ ‖A‖₂ (what
    ``qml.BlockEncode`` divides by; Gershgorin on the M×M Gram matrix for a factor-form system).
    ``lower``: a lower bound on λ_min(A), from conditioning (``lower_source`` ``"conditioning"``),
    or the exact λ_min when conditioning established none (``"exact"``: the emulator's knowledge,
    which a real run would have to bound). ``kappa_eff = alpha/lower``.
    """

    alpha: float
    lower: float
    lower_source: str

    @property
    def kappa_eff(self) -> float:
        return max(1.0, self.alpha / self.lower)


def spectral_bounds(system: LinearSystem) -> SpectralBounds:
    """α and the λ_min bound of :class:`SpectralBounds` for ``system`` (refused matrix-free)."""
    if system.matrix_free:
        raise SolveError("a QLSA needs the entries of A for its block encoding; this system is "
                         "matrix-free (use a classical solver)")
    if system.factor_form:
        gram = system.gram().double()
        alpha = system.block.scale * gershgorin_upper(gram) + system.shift
    else:
        a = system.to_dense().double()
        alpha = math.sqrt(float((a @ a.T).abs().sum(dim=1).max()))
    lower, source = system.min_eig_lower, "conditioning"
    if not lower > 0:
        lower, source = float(torch.linalg.eigvalsh(system.materialize().double())[0]), "exact"
        if not lower > 0:
            raise SolveError(f"A is not positive definite (λ_min = {lower:.3g}): QSVT inversion "
                             "of 1/x needs a spectrum bounded away from 0")
    return SpectralBounds(alpha=float(alpha), lower=float(lower), lower_source=source)


def sampled_probability(p: float, shots: int, generator: torch.Generator) -> float:
    """Binomial estimate ``k/shots`` of a success probability ``p`` from ``shots`` runs."""
    shots = check_int("shots", shots, 1)
    draw = torch.binomial(torch.tensor([float(shots)], dtype=torch.float64),
                          torch.tensor([p], dtype=torch.float64), generator=generator)
    return float(draw[0]) / shots
