"""Block encodings a QLSA can query, as cost options: Toffolis and qubits per query, and the
normalization α they give (docs/method.md §4.4, "Structured block encodings").

* ``sparse-access`` — any N×N matrix with d nonzeros per row, read from a QROAM over its N·d
  stored entries (value + column index): α = d·max|Aᵢⱼ| (Berry–Childs sparse access; the
  scheduler's :func:`~qnewton.quantum.cost.block_encoding_alpha`).
* ``factor`` — A = c·FᵀF + λI with F of M rows (empirical Fisher / GGN blocks): a block
  encoding of F with α_F = ‖F‖_F from a QROAM over its M·N entries (Chakraborty, Gilyén, Jeffery,
  arXiv 1804.01973, Lemma 50: a data-structure block encoding is normalized by the Frobenius
  norm), the product U_F†·U_F encodes FᵀF/‖F‖_F² (Gilyén, Su, Low, Wiebe, arXiv 1806.01838,
  Lemma 30: products multiply the normalizations), and a linear combination with I (ibid.,
  Lemma 29) gives A/(c‖F‖_F² + λ). So α = (c·‖F‖_F² + λ)/‖A‖₂ ≤ M in units of ‖A‖₂, and a query
  is two QROAM reads of M·N entries (F and F†) instead of one of N·d.

A Kronecker-factored block (A = K₁⊗K₂ + λI) is the next entry: a product of two block encodings
of N₁×N₁ and N₂×N₂ factors, α = ‖K₁‖·‖K₂‖-type normalization, QROAM over N₁² + N₂² entries; it
is one more :class:`BlockEncoding` subclass and registry entry here once such blocks exist.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from qnewton.quantum.fault_tolerant import (
    QLSA_ANCILLA_QUBITS,
    algorithmic_qubits,
    toffolis_per_query,
)
from qnewton.quantum.profiles import HardwareProfile, index_bits
from qnewton.registry import Registry
from qnewton.validation import check_int


def vector_toffolis(n: int, profile: HardwareProfile) -> float:
    """Two preparations of |b⟩ per query: ``2·(2√(N·w_b) + 2√N)`` Toffolis (QROAM state
    preparation, arXiv 1812.00954), as in :func:`~qnewton.quantum.fault_tolerant.
    toffolis_per_query`."""
    wb = profile.bits_per_entry
    return 2.0 * (2.0 * math.sqrt(n * wb) + 2.0 * math.sqrt(n))


@dataclass(frozen=True)
class BlockEncoding(ABC):
    """A way to block-encode A: its cost per query (Toffolis, algorithmic qubits)."""

    name: str
    description: str

    @abstractmethod
    def applies(self, factor_rows: int | None) -> bool:
        """Whether this encoding exists for a system held with ``factor_rows`` rows (``None``:
        an explicit matrix)."""

    @abstractmethod
    def toffolis_per_query(self, n: int, d: int, profile: HardwareProfile,
                           factor_rows: int | None) -> float:
        """Toffolis of one query (block encoding + two |b⟩ preparations)."""

    @abstractmethod
    def algorithmic_qubits(self, n: int, d: int, profile: HardwareProfile,
                           factor_rows: int | None) -> int:
        """Logical qubits of one run before layout."""


@dataclass(frozen=True)
class SparseAccess(BlockEncoding):
    """QROAM over the N·d stored entries (the model of :mod:`~qnewton.quantum.fault_tolerant`)."""

    name: str = "sparse-access"
    description: str = "QROAM over N·d entries; α = d·max|Aᵢⱼ|/‖A‖₂"

    def applies(self, factor_rows: int | None) -> bool:
        return True

    def toffolis_per_query(self, n: int, d: int, profile: HardwareProfile,
                           factor_rows: int | None) -> float:
        return toffolis_per_query(n, d, profile)

    def algorithmic_qubits(self, n: int, d: int, profile: HardwareProfile,
                           factor_rows: int | None) -> int:
        return algorithmic_qubits(n, d, profile)


@dataclass(frozen=True)
class FactorForm(BlockEncoding):
    """A = c·FᵀF + λI from a block encoding of F (M rows): two QROAM reads of M·N entries."""

    name: str = "factor"
    description: str = "U_F†·U_F + λI, QROAM over M·N entries of F; α = (c‖F‖_F² + λ)/‖A‖₂"

    def applies(self, factor_rows: int | None) -> bool:
        return factor_rows is not None

    def toffolis_per_query(self, n: int, d: int, profile: HardwareProfile,
                           factor_rows: int | None) -> float:
        """``2·(2√(M·N·w) + 2√(M·N)) + 2·(2√(N·w_b) + 2√N)``: F and F† are each a QROAM read
        (compute + uncompute) of the M·N entries of F, stored densely, so w = bits_per_entry
        (no index bits); the λI term is one ancilla rotation of the LCU, no Toffoli."""
        m = check_int("factor_rows", factor_rows, minimum=1)
        entries = m * check_int("n", n, minimum=1)
        w = profile.bits_per_entry
        read = 2.0 * math.sqrt(entries * w) + 2.0 * math.sqrt(entries)
        return 2.0 * read + vector_toffolis(n, profile)

    def algorithmic_qubits(self, n: int, d: int, profile: HardwareProfile,
                           factor_rows: int | None) -> int:
        """``⌈√(M·N·w)⌉ + ⌈log₂M⌉ + 2⌈log₂N⌉ + w + 10 + 1``: QROAM work qubits, the row
        register of F, the N-index registers, the data register, the QLSA's ancillas and the
        LCU ancilla."""
        m = check_int("factor_rows", factor_rows, minimum=1)
        w = profile.bits_per_entry
        return (math.ceil(math.sqrt(m * n * w)) + index_bits(m) + 2 * index_bits(n) + w
                + QLSA_ANCILLA_QUBITS + 1)


#: The block encodings by name; the scheduler prices every one that applies and keeps the
#: cheapest (docs/method.md §4.4).
BLOCK_ENCODINGS: Registry[BlockEncoding] = Registry("block_encoding")
for _encoding in (SparseAccess(), FactorForm()):
    BLOCK_ENCODINGS.register(_encoding.name, _encoding)
del _encoding


def factor_form_alpha(frobenius_sq: float, shift: float, spectral_norm: float) -> float:
    """α of the factor-form encoding in units of ‖A‖₂: ``max(1, (c‖F‖_F² + λ)/‖A‖₂)``.

    Inputs: ``frobenius_sq`` = c·‖F‖_F² = trace(c·FᵀF) (≥ 0, units of A), ``shift`` λ (≥ 0),
    ``spectral_norm`` ‖A‖₂ (> 0). Output: α (dimensionless, ≥ 1).
    """
    if not (math.isfinite(frobenius_sq) and frobenius_sq >= 0 and shift >= 0
            and spectral_norm > 0):
        raise ValueError("factor_form_alpha needs frobenius_sq >= 0, shift >= 0 and "
                         f"spectral_norm > 0; got {frobenius_sq}, {shift}, {spectral_norm}")
    return max(1.0, (frobenius_sq + shift) / spectral_norm)
