"""QLSA backends: how a quantum solve's answer is produced (adding one: one file + one entry)."""

from qnewton.quantum.backends.base import QLSABackend
from qnewton.quantum.backends.emulated import EmulatedQLSA
from qnewton.registry import Registry

QLSA_BACKENDS: Registry[QLSABackend] = Registry("qlsa_backend")
QLSA_BACKENDS.register("emulated", EmulatedQLSA())

__all__ = ["QLSA_BACKENDS", "EmulatedQLSA", "QLSABackend"]
