"""Modeled time of one quantum linear solve: queries × seconds per query × runs + loading
(docs/method.md §4.1, §4.3–§4.4).

Every time produced here is a **modeled** number of seconds on a named hardware profile, never a
measurement: no quantum computer is run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from qnewton.quantum.block_encodings import BLOCK_ENCODINGS
from qnewton.quantum.error_budget import ErrorBudget
from qnewton.quantum.fault_tolerant import (
    LOGICAL_CYCLES_PER_TOFFOLI,
    FaultTolerantEstimate,
    fault_tolerant_estimate,
)
from qnewton.quantum.logical_counts import qlsa_logical_counts
from qnewton.quantum.profiles import HardwareProfile, index_bits
from qnewton.quantum.qdk_estimator import qdk_estimate
from qnewton.quantum.qlsa import check_qlsa_args, qlsa_queries
from qnewton.quantum.readout import READOUT_MODES, readout_runs
from qnewton.validation import check_choice, check_int, check_open_unit, check_positive


def block_encoding_alpha(d: int, max_abs_entry: float, spectral_norm: float) -> float:
    """Block-encoding normalization of a sparse-access oracle (docs/method.md §4.1).

    ``α = max(1, d·max|Aᵢⱼ| / ‖A‖₂)``: the sparse-access block encoding encodes ``A/(d·max|Aᵢⱼ|)``,
    so after scaling A to ‖A‖₂ = 1 the QLSA sees the effective condition number α·κ.
    Inputs: ``d`` max nonzeros per row (≥ 1), ``max_abs_entry`` largest |Aᵢⱼ| (> 0, units of A),
    ``spectral_norm`` ‖A‖₂ (> 0, same units). Output: α (dimensionless, ≥ 1).
    """
    d = check_int("d", d, minimum=1)
    m = check_positive("max_abs_entry", max_abs_entry)
    s = check_positive("spectral_norm", spectral_norm)
    return max(1.0, d * m / s)


@dataclass(frozen=True)
class QuantumCost:
    """Modeled cost of one quantum linear solve on a hardware profile.

    All times are **modeled** seconds (cost model output on profile ``profile``), never measured.

    Attributes:
        queries: QLSA block-encoding queries per run (model ``qlsa``).
        seconds_per_query: modeled seconds per query.
        runs: full QLSA runs for the readout (1 for ``"state"``).
        solve_seconds: ``queries · seconds_per_query · runs``.
        loading_seconds: classical data-loading time (0 unless the profile charges it).
        total_seconds: ``solve_seconds + loading_seconds``.
        qlsa: QLSA model name.
        profile: hardware profile name.
        readout: readout mode used.
        n, d, kappa, eps, alpha: the inputs.
        toffolis_per_query, toffoli_seconds, code_distance, logical_qubits: fault-tolerant detail
            (``None`` for gate-count profiles).
        physical_qubits, factories: physical qubits (algorithm and magic-state factories) and
            factories of one run (``None`` for gate-count profiles).
        estimator: who turned the logical counts into seconds: ``"qnewton"`` (our model),
            ``"qdk:<preset>"`` (Microsoft's estimator), ``None`` for gate-count profiles.
        readout_error: the tomography error δ charged (``None`` for ``"state"`` readout).
        error_budget: :class:`~qnewton.quantum.error_budget.ErrorBudget` as a dict
            (ε_QLSA, δ_readout, ε_logical, total).
        logical_counts: one run's logical counts
            (:class:`~qnewton.quantum.logical_counts.QLSALogicalCounts` as a dict: qubits, CCZ,
            rotations, T gates), for every profile kind.
        profile_label: the profile's name with the hypothesis it stands for, if any.
        block_encoding: the block encoding priced (:mod:`~qnewton.quantum.block_encodings`).
    """

    queries: float
    seconds_per_query: float
    runs: int
    solve_seconds: float
    loading_seconds: float
    total_seconds: float
    qlsa: str
    profile: str
    readout: str
    n: int
    d: int
    kappa: float
    eps: float
    alpha: float
    toffolis_per_query: float | None = None
    toffoli_seconds: float | None = None
    code_distance: int | None = None
    logical_qubits: int | None = None
    physical_qubits: int | None = None
    factories: int | None = None
    estimator: str | None = None
    readout_error: float | None = None
    error_budget: dict[str, float] = field(default_factory=dict)
    logical_counts: dict[str, Any] = field(default_factory=dict)
    profile_label: str = ""
    block_encoding: str = "sparse-access"
    time_kind: str = field(default="modeled", init=False)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serializable dict (``time_kind`` is always ``"modeled"``)."""
        return dataclasses.asdict(self)


def quantum_cost(
    n: int,
    d: int,
    kappa: float,
    eps: float,
    *,
    alpha: float = 1.0,
    qlsa: str = "jennings",
    profile: HardwareProfile,
    readout: str | None = None,
    nnz: int | None = None,
    readout_error: float | None = None,
    block_encoding: str = "sparse-access",
    factor_rows: int | None = None,
) -> QuantumCost:
    """Modeled time of a QLSA solve of an N×N system with row sparsity d.

    ``total = queries · seconds_per_query · runs + loading``, where

    * queries: :func:`~qnewton.quantum.qlsa.qlsa_queries` ``(qlsa, κ, ε, α)`` (§4.3);
    * seconds_per_query: gate-count profiles ``max(1, ⌈log₂N⌉) · gate_time_s``; fault-tolerant
      profiles ``Toffolis/query · Toffoli time`` (:func:`fault_tolerant_estimate`, §4.4);
      ``"qdk-estimator"`` profiles the ``qdk`` estimator's runtime of one run / queries
      (:func:`~qnewton.quantum.qdk_estimator.qdk_estimate`);
    * the block encoding ``block_encoding`` (:data:`~qnewton.quantum.block_encodings.
      BLOCK_ENCODINGS`; ``"factor"`` needs ``factor_rows``) sets Toffolis and qubits per query
      on fault-tolerant profiles; its α is the caller's ``alpha``;
    * runs: :func:`readout_runs` for ``readout`` (default: the profile's ``default_readout``) at
      tomography error ``readout_error`` (default: the profile's);
    * loading (only if ``profile.charge_loading``): ``(nnz·w + N·w_b)/8`` bytes (A's entries with
      column indices, w = bits_per_entry + ⌈log₂N⌉, plus b) at ``loading_bandwidth_bytes_per_s``,
      once per solve; ``nnz`` defaults to the upper bound N·d.

    Inputs: n ≥ 1, 1 ≤ d ≤ n, kappa ≥ 1, 0 < eps < 1, alpha > 0, nnz in [1, n·d]. Every time is a
    modeled number of seconds on ``profile``, not a measurement.
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1, maximum=n)
    k, e, a = check_qlsa_args(kappa, eps, alpha)
    if not isinstance(profile, HardwareProfile):
        raise ValueError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
    mode = check_choice("readout", profile.default_readout if readout is None else readout,
                        READOUT_MODES)
    nnz = check_int("nnz", n * d if nnz is None else nnz, minimum=1, maximum=n * d)

    delta = check_open_unit("readout_error",
                            profile.readout_error if readout_error is None else readout_error)
    encoding = BLOCK_ENCODINGS[block_encoding]
    if not encoding.applies(factor_rows):
        raise ValueError(f"block_encoding {block_encoding!r} needs factor_rows (a system held "
                         "as c·FᵀF + λI)")
    tof = encoding.toffolis_per_query(n, d, profile, factor_rows)
    alg_qubits = encoding.algorithmic_qubits(n, d, profile, factor_rows)
    q = qlsa_queries(qlsa, k, e, a)
    counts = qlsa_logical_counts(n, d, q, profile, toffolis=tof, qubits=alg_qubits)
    runs = readout_runs(n, mode, delta)
    detail: dict[str, Any] = {}
    if profile.kind == "gate-count":
        per_query = max(1, index_bits(n)) * float(profile.gate_time_s)
    elif profile.kind == "qdk-estimator":
        qe = qdk_estimate(n, d, q, profile, toffolis=tof, algorithmic=alg_qubits)
        per_query = qe.runtime_seconds / q
        detail = {"toffolis_per_query": qe.ccz_count / q,
                  "toffoli_seconds": LOGICAL_CYCLES_PER_TOFFOLI * qe.logical_cycle_seconds,
                  "code_distance": qe.code_distance, "logical_qubits": qe.logical_qubits,
                  "physical_qubits": qe.physical_qubits, "factories": qe.factories,
                  "estimator": qe.estimator}
    else:
        ft: FaultTolerantEstimate = fault_tolerant_estimate(
            n, d, q, profile, toffolis=tof, algorithmic=alg_qubits,
            rotations=counts.rotation_count, t_per_rotation=counts.t_per_rotation)
        per_query = ft.seconds_per_query
        detail = {"toffolis_per_query": ft.toffolis_per_query,
                  "toffoli_seconds": ft.toffoli_seconds, "code_distance": ft.code_distance,
                  "logical_qubits": ft.logical_qubits, "physical_qubits": ft.physical_qubits,
                  "factories": ft.factories, "estimator": "qnewton"}
    solve = q * per_query * runs
    loading = 0.0
    if profile.charge_loading:
        nbytes = (nnz * profile.entry_bits(n) + n * profile.bits_per_entry) / 8.0
        loading = nbytes / profile.loading_bandwidth_bytes_per_s
    return QuantumCost(
        queries=q,
        seconds_per_query=per_query,
        runs=runs,
        solve_seconds=solve,
        loading_seconds=loading,
        total_seconds=solve + loading,
        qlsa=qlsa,
        profile=profile.name,
        readout=mode,
        n=n,
        d=d,
        kappa=k,
        eps=e,
        alpha=a,
        readout_error=delta if mode == "vector" else None,
        error_budget=ErrorBudget(
            eps_qlsa=e, delta_readout=delta if mode == "vector" else 0.0,
            eps_logical=0.0 if profile.kind == "gate-count" else profile.error_budget).to_dict(),
        logical_counts=counts.to_dict(),
        block_encoding=block_encoding,
        profile_label=profile.label(),
        **detail,
    )
