"""The ``circuit`` QLSA backend: the QSVT inversion circuit, simulated gate by gate with PennyLane
``lightning.qubit`` (docs/method.md §4.11). Needs the optional extra ``qnewton[quantum]``.

Circuit, on ``2 + ⌈log₂N⌉`` qubits (wire 0: real-part ancilla, wire 1: block-encoding ancilla,
then the system register, padded with zeros to a power of two): prepare ``|b̂⟩``; H on wire 0;
the QSVT sequence ``Π_{φ₀} U Π_{φ₁} U … U Π_{φ_D}`` (the order of ``qml.QSVT``), where U is the
block encoding ``[[A/α, √(I−(A/α)²)], [√(I−(A/α)²), −A/α]]`` that ``qml.BlockEncode`` builds,
formed once per solve without BlockEncode's silent rescaling (α ≥ ‖A‖₂ is ours, so κ_eff is
known), and each projector phase ``qml.PCPhase(±φ_k)`` is controlled on wire 0 being 0 / 1
(``e^{iφ_k(2Π−I)⊗Z₀} = e^{iφ_k Z₁Z₀}``, one ``IsingZZ``), so the two branches carry P(A/α)
and its complex conjugate; H on wire 0. Post-selecting wires 0 and 1 on |0⟩ leaves
``Re P(A/α)·b̂ = p(A/α)·b̂`` (QSVT phases encode p in the real part only). Phases come from
:func:`~qnewton.quantum.backends.phases.symmetric_phases` (Chebyshev basis, Newton), converted with
``qml.transform_angles(…, "QSP", "QSVT")``, cached per (κ_eff, ε) polynomial.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from qnewton.quantum.backends.inversion import InversePolynomial, SpectralBounds
from qnewton.quantum.backends.phases import symmetric_phases
from qnewton.quantum.backends.polynomial import PolynomialQLSA
from qnewton.system import LinearSystem

#: Largest block the circuit backend simulates; larger ones take the polynomial backend (the same
#: ideal output). Measured on this project's shared 2-core machine, 1 thread, degree 197
#: (κ_eff = 16, ε = 1e-2), lightning.qubit (docs/method.md §4.11): N = 128 0.09–0.26 s, N = 256
#: 0.96–1.11 s at load 2.8 and 2.4–3.0 s at load 3–6; N = 128 stays under ~1 s.
CIRCUIT_MAX_N = 128


class CircuitLimitError(ValueError):
    """A block larger than :data:`CIRCUIT_MAX_N`."""


def require_pennylane():
    """``pennylane`` with lightning.qubit, or a clear error naming the extra to install."""
    try:
        import pennylane as qml
        import pennylane_lightning  # noqa: F401  (the lightning.qubit device)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the circuit QLSA backend needs PennyLane with lightning.qubit: "
                          "pip install 'qnewton[quantum]'") from exc
    return qml


def block_encoding(a: np.ndarray) -> np.ndarray:
    """``[[A, √(I−A²)], [√(I−A²), −A]]`` for symmetric A with ‖A‖₂ ≤ 1: the matrix
    ``qml.BlockEncode`` builds, without its rescaling by √‖AAᵀ‖_∞ (a sufficient test that can
    exceed 1 when ‖A‖₂ ≤ 1 and would silently change α)."""
    w, v = np.linalg.eigh(a)
    root = (v * np.sqrt(np.clip(1 - w * w, 0.0, None))) @ v.T
    return np.block([[a, root], [root, -a]])


class CircuitQLSA(PolynomialQLSA):
    """The QSVT circuit's post-selected output, simulated (N ≤ :data:`CIRCUIT_MAX_N`)."""

    name = "circuit"
    label = "qlsa-circuit"
    max_n = CIRCUIT_MAX_N
    #: larger blocks, routed by the scheduler (:func:`~qnewton.quantum.backends.size_fallback`):
    #: the same ideal QSVT output, computed by the Chebyshev recurrence
    fallback = "polynomial"

    def prepare(self, system: LinearSystem, bounds: SpectralBounds,
                poly: InversePolynomial) -> None:
        if system.n > self.max_n:
            raise CircuitLimitError(
                f"the circuit QLSA backend simulates blocks up to N = {self.max_n}; this block "
                f"has N = {system.n}: use qlsa_backend 'polynomial' (the same output computed "
                "classically), or smaller blocks")
        require_pennylane()

    def apply(self, system: LinearSystem, bounds: SpectralBounds, poly: InversePolynomial,
              b_hat: torch.Tensor) -> torch.Tensor:
        qml = require_pennylane()
        n = system.n
        qubits = max(1, math.ceil(math.log2(n)))
        size = 2**qubits
        a = np.zeros((size, size))
        a[:n, :n] = system.materialize().detach().to(torch.float64).numpy() / bounds.alpha
        a = (a + a.T) / 2  # symmetric to rounding, so the block encoding is Hermitian
        state = np.zeros(size)
        state[:n] = b_hat.numpy()
        angles = np.asarray(qml.transform_angles(symmetric_phases(poly.coefficients),
                                                 "QSP", "QSVT"))
        register = list(range(1, qubits + 2))
        unitary = block_encoding(a)  # once per solve
        device = qml.device("lightning.qubit", wires=qubits + 2)

        @qml.qnode(device)
        def circuit():
            qml.StatePrep(state, wires=register[1:])
            qml.Hadamard(0)
            for k, phi in enumerate(angles):
                if k:
                    qml.QubitUnitary(unitary, wires=register)
                # PCPhase(φ, dim=size) on the register is e^{iφ(2Π−I)} = e^{iφZ₁} (Π: wire 1
                # in |0⟩); +φ on the wire-0 branch |0⟩ and −φ on |1⟩ is e^{iφZ₀Z₁} = IsingZZ(−2φ),
                # a two-qubit gate (a diagonal gate on all wires is ~5× slower in lightning)
                qml.IsingZZ(-2 * phi, wires=[0, 1])
            qml.Hadamard(0)
            return qml.state()

        amplitudes = np.asarray(circuit())[:size]  # wires 0 and 1 in |0⟩ (most significant)
        if np.max(np.abs(amplitudes.imag)) > 1e-8:
            raise ArithmeticError("post-selected QSVT amplitudes are not real")
        return torch.from_numpy(np.ascontiguousarray(amplitudes.real[:n]))
