"""QLSA backends: how a quantum solve's answer is produced (adding one: one file + one entry)."""

from qnewton.quantum.backends.base import QLSABackend, QLSABackendFallbackWarning, size_fallback
from qnewton.quantum.backends.circuit import CIRCUIT_MAX_N, CircuitLimitError, CircuitQLSA
from qnewton.quantum.backends.emulated import EmulatedQLSA
from qnewton.quantum.backends.polynomial import PolynomialQLSA
from qnewton.registry import Registry

QLSA_BACKENDS: Registry[QLSABackend] = Registry("qlsa_backend")
QLSA_BACKENDS.register("emulated", EmulatedQLSA())
QLSA_BACKENDS.register("polynomial", PolynomialQLSA())
QLSA_BACKENDS.register("circuit", CircuitQLSA())

__all__ = ["CIRCUIT_MAX_N", "QLSA_BACKENDS", "CircuitLimitError", "CircuitQLSA", "EmulatedQLSA",
           "PolynomialQLSA", "QLSABackend", "QLSABackendFallbackWarning", "size_fallback"]
