"""Surface-code model (qnewton.quantum.fault_tolerant), pinned to the Azure Resource Estimator.

Two worked examples of the estimator (gate-based surface code, qubit_gate_ns_e3: 50 ns gates,
100 ns measurement, p = 1e-3, error budget 1e-3 of which one third, 3.33e-4, goes to logical
errors), as printed in its report explanations (Beverland et al., arXiv 2211.07629, whose model
the estimator implements):

* A: Q_alg = 16 algorithmic qubits → 45 after layout; 7,545 logical cycles; code distance 15;
  logical error rate 0.03·(0.001/0.01)^8 = 3.00e-10; logical cycle time 6 µs.
* B: Q_alg = 97 → 223 after layout; 3,745,413 logical cycles; code distance 21; logical error
  rate 3.00e-13; logical cycle time 8,400 ns.
"""

from __future__ import annotations

import math

import pytest

from qnewton.quantum import (
    code_distance,
    fault_tolerant_estimate,
    get_profile,
    logical_qubits,
    quantum_cost,
    toffolis_per_query,
)
from qnewton.quantum.fault_tolerant import (
    layout_qubits,
    logical_cycle_seconds,
    logical_error_rate,
)

LOGICAL_BUDGET = 1e-3 / 3  # the estimator's default split of a 1e-3 budget


@pytest.mark.parametrize(("distance", "rate"), [(15, 3.0e-10), (21, 3.0e-13)])
def test_logical_error_rate_matches_azure_examples(distance, rate):
    assert logical_error_rate(1e-3, distance) == pytest.approx(rate, rel=1e-12)


@pytest.mark.parametrize(("algorithmic", "laid_out"), [(16, 45), (97, 223)])
def test_layout_matches_azure_examples(algorithmic, laid_out):
    assert layout_qubits(algorithmic) == laid_out


@pytest.mark.parametrize(("qubits", "cycles", "distance"), [(45, 7545, 15), (223, 3745413, 21)])
def test_code_distance_matches_azure_examples(qubits, cycles, distance):
    assert code_distance(1e-3, qubits, cycles, LOGICAL_BUDGET) == distance


@pytest.mark.parametrize(("distance", "seconds"), [(15, 6000e-9), (21, 8400e-9)])
def test_logical_cycle_time_matches_azure_examples(distance, seconds):
    assert logical_cycle_seconds(get_profile("surface-code"), distance) == pytest.approx(
        seconds, rel=1e-12)


def test_trapped_ion_logical_cycle_is_600_microseconds_per_distance():
    # qubit_gate_us_e3: (4·100 µs + 2·100 µs)·d
    assert logical_cycle_seconds(get_profile("trapped-ion"), 27) == pytest.approx(
        27 * 600e-6, rel=1e-12)


def test_code_distance_is_the_smallest_odd_distance_meeting_the_budget():
    est = fault_tolerant_estimate(10**4, 100, 1e5, get_profile("surface-code"))
    d = est.code_distance
    assert d % 2 == 1 and d >= 3

    def failure(dist):
        return logical_error_rate(1e-3, dist) * est.logical_qubits * est.logical_cycles

    assert failure(d) <= 1e-3 < failure(d - 2)


def test_code_distance_monotone():
    ps = [1e-5, 1e-4, 5e-4, 1e-3, 3e-3, 8e-3]
    ds = [code_distance(p, 1000, 1e10, 1e-3) for p in ps]
    assert ds == sorted(ds) and ds[0] < ds[-1]
    cycles = [1e6, 1e9, 1e12, 1e15]
    dc = [code_distance(1e-3, 1000, c, 1e-3) for c in cycles]
    assert dc == sorted(dc) and dc[0] < dc[-1]
    # problem size: bigger N and d -> more Toffolis and qubits -> never a smaller distance
    prof = get_profile("surface-code")
    sizes = [(10**2, 10), (10**4, 100), (10**6, 1000), (10**8, 10**4)]
    dist = [quantum_cost(n, d, 1e3, 1e-2, profile=prof).code_distance for n, d in sizes]
    assert dist == sorted(dist) and dist[0] < dist[-1]
    assert all(x % 2 == 1 for x in ds + dc + dist)


def test_code_distance_infeasible_budget():
    # just below threshold the logical error rate barely falls with d
    with pytest.raises(ValueError, match="no code distance <= 2001"):
        code_distance(0.0099999, 10**6, 1e20, 1e-9)


@pytest.mark.parametrize(
    ("args", "param"),
    [
        ((0.02, 10, 1e6, 1e-3), "physical_error_rate"),
        ((0.01, 10, 1e6, 1e-3), "physical_error_rate"),
        ((1e-3, 0, 1e6, 1e-3), "n_logical_qubits"),
        ((1e-3, 10, 0.0, 1e-3), "logical_cycles"),
        ((1e-3, 10, 1e6, 1.5), "error_budget"),
    ],
)
def test_code_distance_bad_inputs(args, param):
    with pytest.raises(ValueError, match=f"^{param} must be"):
        code_distance(*args)


def test_toffolis_per_query_grow_as_square_root_of_stored_entries():
    # A QROAM read of L items costs O(√L) Toffolis (Low, Kliuchnikov, Schaeffer, arXiv 1812.00954;
    # Berry et al., arXiv 1902.02134). At fixed N the matrix part scales as √d and the |b⟩ part
    # does not depend on d, so the increments for d → 4d → 16d double.
    prof = get_profile("surface-code")

    def tof(d):
        return toffolis_per_query(10**4, d, prof)

    assert (tof(1600) - tof(400)) / (tof(400) - tof(100)) == pytest.approx(2.0, rel=1e-12)
    # far below the ≈L Toffolis of a plain QROM over all L = N·d entries (unary iteration,
    # Babbush et al., arXiv 1805.03662)
    assert toffolis_per_query(10**6, 100, prof) < 1e-2 * (10**6 * 100)


def test_logical_qubits_are_dominated_by_the_laid_out_qroam_workspace():
    # ≈√(N·d·w) QROAM work qubits, doubled by the layout: the ratio to 2√(N·d·w) tends to 1
    prof = get_profile("surface-code")
    n, d = 10**8, 10**4
    w = 16 + 27  # value bits + ⌈log₂ 1e8⌉ column-index bits
    assert logical_qubits(n, d, prof) / (2 * math.sqrt(n * d * w)) == pytest.approx(1.0, rel=1e-3)
    assert logical_qubits(100, 5, prof) > logical_qubits(100, 4, prof)


def test_fault_tolerant_estimate_times():
    prof = get_profile("surface-code")
    est = fault_tolerant_estimate(10**4, 100, 1e5, prof)
    # a Toffoli (CCZ) is three one-cycle multi-qubit Pauli measurements (the estimator's PSSPC
    # schedule, arXiv 2211.07629); Toffolis run one after another
    assert est.logical_cycles == pytest.approx(3 * est.toffolis_per_query * 1e5, rel=1e-12)
    assert est.logical_cycle_seconds == logical_cycle_seconds(prof, est.code_distance)
    assert est.toffoli_seconds == pytest.approx(3 * est.logical_cycle_seconds, rel=1e-12)
    assert est.seconds_per_query == pytest.approx(est.toffolis_per_query * est.toffoli_seconds,
                                                  rel=1e-12)


def test_fault_tolerant_estimate_rejects_gate_count_profiles_and_bad_queries():
    with pytest.raises(ValueError, match="fault-tolerant"):
        fault_tolerant_estimate(100, 5, 1e3, get_profile("paper"))
    with pytest.raises(ValueError, match="^queries must be"):
        fault_tolerant_estimate(100, 5, 0.0, get_profile("surface-code"))
    with pytest.raises(ValueError, match="^n must be"):
        toffolis_per_query(0, 5, get_profile("surface-code"))
    with pytest.raises(ValueError, match="^d must be"):
        logical_qubits(10, 0, get_profile("surface-code"))
