"""Structured block encodings (qnewton.quantum.block_encodings): the factor-form construction
checked on explicit unitaries, its per-query counts against hand-computed values, and the
scheduler keeping the cheaper encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnewton.curvature import FactorBlock
from qnewton.quantum import get_profile, quantum_cost
from qnewton.quantum.block_encodings import BLOCK_ENCODINGS, factor_form_alpha
from qnewton.system import LinearSystem


def dilation(x: np.ndarray) -> np.ndarray:
    """The unitary [[X, √(I−XXᵀ)], [√(I−XᵀX), −Xᵀ]] for a real square X with ‖X‖₂ ≤ 1."""
    def root(h):
        w, v = np.linalg.eigh(h)
        return (v * np.sqrt(np.clip(1 - w, 0, None))) @ v.T
    return np.block([[x, root(x @ x.T)], [root(x.T @ x), -x.T]])


def test_factor_form_encoding_encodes_a_over_its_alpha():
    # A = c·FᵀF + λI from a block encoding of F/‖F‖_F: U_F (F in the top-left block), then
    # U_F†-type product gives FᵀF/‖F‖_F², and the LCU with I gives A/(c‖F‖_F² + λ).
    rng = np.random.default_rng(0)
    m, n, c, lam = 3, 6, 0.5, 0.2
    f = rng.standard_normal((m, n))
    frob = np.linalg.norm(f)
    x = np.zeros((n, n))
    x[:m] = f / frob  # F padded to N×N rows
    u = dilation(x).reshape(2, n, 2, n)  # [ancilla', system', ancilla, system]
    ut = dilation(x.T).reshape(2, n, 2, n)
    assert np.allclose(dilation(x) @ dilation(x).T, np.eye(2 * n), atol=1e-10)
    # U_Fᵀ on its own ancilla b after U_F on ancilla a (GSLW Lemma 30): the full product on
    # (b, a, system), a unitary, whose |00⟩ ancilla block encodes FᵀF/‖F‖_F²
    eye2 = np.eye(2)
    full = np.einsum("BsCt,Aa->BAsCat", ut, eye2).reshape(4 * n, 4 * n) @ np.einsum(
        "ArCt,Bb->BArbCt", u, eye2).reshape(4 * n, 4 * n)
    assert np.allclose(full @ full.T, np.eye(4 * n), atol=1e-10)
    product = full.reshape(2, 2, n, 2, 2, n)[0, 0, :, 0, 0, :]
    assert np.allclose(product, f.T @ f / frob**2, atol=1e-10)
    weight = c * frob**2 / (c * frob**2 + lam)
    encoded = weight * product + (1 - weight) * np.eye(n)  # LCU of the two encodings
    a = c * f.T @ f + lam * np.eye(n)
    assert np.allclose(encoded, a / (c * frob**2 + lam), atol=1e-10)
    # in units of ‖A‖₂, α = (c‖F‖_F² + λ)/‖A‖₂ ≥ 1, and ≤ M for this rank-M structure
    norm = np.linalg.eigvalsh(a)[-1]
    alpha = factor_form_alpha(c * frob**2, lam, norm)
    assert alpha == pytest.approx((c * frob**2 + lam) / norm)
    assert 1.0 <= alpha <= m


def test_factor_form_counts_per_query():
    profile = get_profile("surface-code")  # 16-bit entries
    factor = BLOCK_ENCODINGS["factor"]
    # M = 64, N = 1024: each read 2√(65536·16) + 2√65536 = 2048 + 512; F and F†: 5120;
    # |b⟩ twice: 2·(2√(1024·16) + 2√1024) = 640 → 5760 Toffolis
    assert factor.toffolis_per_query(1024, 1024, profile, 64) == pytest.approx(5760.0)
    # sparse access reads N·d = 1M entries of 16 + 10 bits: 2√(2^20·26) + 2·1024 + 640
    dense = BLOCK_ENCODINGS["sparse-access"].toffolis_per_query(1024, 1024, profile, None)
    assert dense == pytest.approx(2 * np.sqrt(2**20 * 26) + 2048 + 640)
    assert not factor.applies(None) and factor.applies(8)
    with pytest.raises(ValueError, match="needs factor_rows"):
        quantum_cost(64, 64, 10.0, 1e-2, profile=profile, block_encoding="factor")


def test_scheduler_prices_both_encodings_and_keeps_the_cheaper():
    from qnewton.scheduling import Scheduler, SchedulerConfig
    from qnewton.solvers import MachineRates

    g = torch.Generator().manual_seed(3)
    f = torch.randn(16, 256, generator=g, dtype=torch.float64)
    system = LinearSystem(block=FactorBlock("w", "fisher", f, scale=1 / 16), shift=0.1, reg=0.1,
                          d=256, nnz=256 * 256)
    rates = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                              bandwidth_bytes_per_s=1e10)
    sched = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"), policy="quantum"),
                      rates=rates)
    analysis = sched.analyse(system)
    a = system.to_dense()
    frob = float((f**2).sum()) / 16
    assert analysis.alpha_factor == pytest.approx(max(1.0, (frob + 0.1) / analysis.norm))
    assert analysis.alpha_factor * analysis.norm >= float(torch.linalg.eigvalsh(a)[-1])
    decision = sched.decide(system, analysis)
    shape_kappa = decision.quantum.kappa
    from qnewton.solvers import shape_of
    shape = shape_of(system, shape_kappa)
    sparse = sched.quantum_cost(shape, shape_kappa, analysis.alpha)
    factor = sched.quantum_cost(shape, shape_kappa, analysis.alpha_factor, "factor")
    best = min((sparse, factor), key=lambda c: c.total_seconds)
    assert decision.quantum.block_encoding == best.block_encoding == "factor"
    assert decision.quantum.total_seconds == best.total_seconds < sparse.total_seconds
    record = sched.record(step=0, block="w", system=system, analysis=analysis,
                          decision=decision, result=None)
    assert record.block_encoding == "factor" and record.alpha_factor == analysis.alpha_factor
