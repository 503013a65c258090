"""Phase factors of symmetric quantum signal processing, found in the Chebyshev basis.

Convention (the Wx convention of PennyLane's ``"QSP"`` routine and of Dong, Lin, Ni, Wang):
``U(x, Φ) = e^{iφ₀Z} Π_{j=1}^{d} [W(x) e^{iφ_jZ}]`` with ``W(x) = [[x, i√(1−x²)], [i√(1−x²), x]]``.
For symmetric phases (``φ_j = φ_{d−j}``), ``Im⟨0|U|0⟩`` is a real odd polynomial of degree d when d
is odd. We solve ``Im⟨0|U(x_k, Φ)|0⟩ = p(x_k)`` at the ``(d+1)/2`` positive Chebyshev nodes (which
determine an odd polynomial of degree d) by Newton's method on the reduced phases, started from
``φ_j = c_{d−2j}/2`` (the linearization ``Im⟨0|U|0⟩ ≈ Σ_j 2φ_j T_{d−2j}``). This is the Newton
iteration of Dong, Lin, Ni, Wang, "Robust iterative method for symmetric quantum signal processing
in all parameter regimes" (arXiv 2307.12468), which converges for ``max|p| < 1``; the
Jacobian is reused (chord steps) while the residual shrinks at least 4× per step. Nothing here
forms monomial coefficients, which fail past degree ~50 (docs/method.md §4.11).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.linalg

from qnewton.solvers.base import SolveError

#: Newton stops when the largest residual at the nodes is below this (absolute, |p| ≤ 1).
PHASE_TOL = 1e-13
#: Newton iterations allowed (it converges quadratically: 5–10 suffice for |p| ≤ 1 − 1e-4).
MAX_NEWTON = 60
#: Nodes per chunk of the Jacobian computation (bounds memory at ~(d+1)·CHUNK·64 bytes).
CHUNK = 256


def _sweeps(full: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row 0 of the product left of each ``R_j`` and column 0 right of it, for every j."""
    d = full.size - 1
    s = np.sqrt(np.clip(1 - x * x, 0.0, None))
    e_plus, e_minus = np.exp(1j * full), np.exp(-1j * full)
    left = np.empty((d + 1, x.size, 2), dtype=complex)
    right = np.empty((d + 1, x.size, 2), dtype=complex)
    row = np.zeros((x.size, 2), dtype=complex)
    row[:, 0] = 1.0
    for j in range(d + 1):
        left[j] = row
        if j < d:  # row ← row·R_j·W
            a, b = row[:, 0] * e_plus[j], row[:, 1] * e_minus[j]
            row = np.stack([a * x + 1j * b * s, 1j * a * s + b * x], axis=1)
    col = np.zeros((x.size, 2), dtype=complex)
    col[:, 0] = 1.0
    for j in range(d, -1, -1):
        right[j] = col
        if j > 0:  # col ← W·R_j·col
            a, b = col[:, 0] * e_plus[j], col[:, 1] * e_minus[j]
            col = np.stack([x * a + 1j * s * b, 1j * s * a + x * b], axis=1)
    return left, right


def _values(reduced: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``Im⟨0|U(x, Φ)|0⟩`` for symmetric phases given by their first half."""
    full = np.concatenate([reduced, reduced[::-1]])
    s = np.sqrt(np.clip(1 - x * x, 0.0, None))
    e_plus, e_minus = np.exp(1j * full), np.exp(-1j * full)
    a = np.full(x.size, e_plus[0], dtype=complex)  # row 0 of R_0
    b = np.zeros(x.size, dtype=complex)
    for j in range(1, full.size):  # row ← row·W·R_j
        a, b = (a * x + 1j * b * s) * e_plus[j], (1j * a * s + b * x) * e_minus[j]
    return a.imag


def _value_and_jacobian(reduced: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    full = np.concatenate([reduced, reduced[::-1]])
    d = full.size - 1
    half = reduced.size
    values = np.empty(x.size)
    jac = np.empty((x.size, half))
    for start in range(0, x.size, CHUNK):
        part = slice(start, start + CHUNK)
        left, right = _sweeps(full, x[part])
        ep = np.exp(1j * full)[:, None]
        em = np.exp(-1j * full)[:, None]
        u00 = left[0, :, 0] * ep[0] * right[0, :, 0] + left[0, :, 1] * em[0] * right[0, :, 1]
        values[part] = u00.imag
        # ∂U00/∂φ_j = i·(l_j[0] e^{iφ_j} r_j[0] − l_j[1] e^{−iφ_j} r_j[1])
        grad = 1j * (left[:, :, 0] * ep * right[:, :, 0] - left[:, :, 1] * em * right[:, :, 1])
        g = grad.imag  # (d+1, n)
        jac[part] = (g[:half] + g[d - np.arange(half)]).T
    return values, jac


def symmetric_phases(coefficients: np.ndarray) -> np.ndarray:
    """Full QSP phases (Wx convention, d+1 of them) with ``Re⟨0|U(x, Φ)|0⟩ = p(x)`` for the odd
    polynomial ``p = Σ c_k T_k`` (Chebyshev coefficients, odd degree d, ``max|p| < 1``).

    Cached per coefficient vector in this process."""
    c = np.asarray(coefficients, dtype=float)
    return np.array(_symmetric_phases(tuple(c.tolist())))


@lru_cache(maxsize=32)
def _symmetric_phases(coefficients: tuple[float, ...]) -> tuple[float, ...]:
    c = np.array(coefficients)
    d = c.size - 1
    if d % 2 == 0 or np.any(c[::2] != 0):
        raise ValueError("symmetric_phases needs an odd polynomial of odd degree")
    half = (d + 1) // 2
    x = np.cos((2 * np.arange(1, half + 1) - 1) * np.pi / (4 * half))
    target = np.polynomial.chebyshev.chebval(x, c)
    reduced = c[d - 2 * np.arange(half)] / 2
    jac = None
    last = np.inf
    for _ in range(MAX_NEWTON):
        values = _values(reduced, x)
        residual = values - target
        size = np.max(np.abs(residual))
        if size < PHASE_TOL:
            break
        if jac is None or size > last / 4:  # chord steps while they converge fast, else Newton
            jac = scipy.linalg.lu_factor(_value_and_jacobian(reduced, x)[1])
        last = size
        reduced = reduced - scipy.linalg.lu_solve(jac, residual)
    else:
        raise SolveError(f"QSP phase finding did not converge at degree {d} "
                         f"(residual {np.max(np.abs(residual)):.2e})")
    full = np.concatenate([reduced, reduced[::-1]])
    # e^{−iπ/4 Z} at both ends multiplies ⟨0|U|0⟩ by −i: its real part becomes Im⟨0|U|0⟩ = p.
    full[0] -= math.pi / 4
    full[-1] -= math.pi / 4
    return tuple(full.tolist())


def qsp_value(phases: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``⟨0|U(x, Φ)|0⟩`` (complex) for full phases Φ in the Wx convention (for checks)."""
    x = np.atleast_1d(np.asarray(x, dtype=float))
    left, right = _sweeps(np.asarray(phases, dtype=float), x)
    e0 = np.exp(1j * phases[0])
    return left[0, :, 0] * e0 * right[0, :, 0] + left[0, :, 1] * np.conj(e0) * right[0, :, 1]
