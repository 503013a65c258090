"""An established resource estimator as a hardware profile: our logical counts of one QLSA run
sent to Microsoft's ``qdk`` resource estimator (docs/method.md §4.4).

The estimator (the Azure Quantum Resource Estimator, Beverland et al., arXiv 2211.07629, shipped
offline in the ``qdk`` Python package, optional extra ``qnewton[quantum]``) receives the run's
*logical* counts — algorithmic qubits before layout, its Toffolis as CCZ gates and its
rotations (:mod:`~qnewton.quantum.logical_counts`) — with a
gate-based qubit preset (``profile.qdk_qubit_params``) whose gate time, measurement time and
Clifford error rates are set to the profile's, the gate-based surface code and the profile's total
error budget (which the estimator splits between logical errors and T-state distillation). It
returns the runtime, code distance, physical qubits and magic-state factories. Every time is a
**modeled** number of seconds, labelled ``"qdk:<preset>"``. Calls are cached by their inputs.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from qnewton.quantum.logical_counts import qlsa_logical_counts
from qnewton.quantum.profiles import HardwareProfile
from qnewton.validation import check_positive

#: Install line named in the error raised when ``qdk`` is missing.
QDK_INSTALL = "pip install 'qnewton[quantum]'"
#: Largest CCZ count the estimator takes: it reads counts as unsigned 64-bit integers.
MAX_CCZ_COUNT = 2**64 - 1
#: Largest runtime the estimator reports, in ns (u64; beyond it the runtime wraps around).
MAX_RUNTIME_NS = 2**64 - 1
#: Largest code distance the estimator searches (its surface code's ``maxCodeDistance``,
#: default 50), raised to our own model's limit so both answer over the same range.
QDK_MAX_CODE_DISTANCE = 2001
#: Nanoseconds per second: the estimator reads times as strings in ns and reports runtimes in ns.
NS_PER_S = 1e9


class QdkUnavailableError(ValueError):
    """A ``"qdk-estimator"`` profile was used without the optional ``qdk`` package."""


def require_qdk(profile_name: str = "qdk-estimator") -> Any:
    """The ``qdk.estimator`` module, or :class:`QdkUnavailableError` naming the install line."""
    try:
        from qdk import estimator
    except ImportError as exc:
        raise QdkUnavailableError(
            f"hardware profile {profile_name!r} needs the optional package qdk "
            f"({QDK_INSTALL}); it is not installed ({exc})") from None
    return estimator


@dataclass(frozen=True)
class QdkEstimate:
    """The ``qdk`` estimator's answer for one QLSA run (times **modeled**).

    Attributes:
        estimator: ``"qdk:<preset>"``.
        algorithmic_qubits: logical qubits sent (before layout).
        ccz_count: CCZ gates sent (⌈Toffolis per query · queries⌉).
        runtime_seconds: modeled runtime of the run.
        code_distance: surface-code distance.
        logical_qubits: logical qubits after the estimator's layout.
        logical_cycle_seconds: modeled seconds of one logical cycle.
        physical_qubits: physical qubits in all.
        factories: magic-state (T) factories running in parallel.
        factory_physical_qubits: physical qubits of all factories.
    """

    estimator: str
    algorithmic_qubits: int
    ccz_count: int
    runtime_seconds: float
    code_distance: int
    logical_qubits: int
    logical_cycle_seconds: float
    physical_qubits: int
    factories: int
    factory_physical_qubits: int


def _ns(seconds: float) -> str:
    return f"{seconds * NS_PER_S:.6g} ns"


def qubit_params(profile: HardwareProfile) -> dict[str, Any]:
    """The estimator's ``qubitParams``: the preset, with its two-qubit gate and measurement times
    and its Clifford error rates replaced by the profile's (the T-gate error and the one-qubit gate
    time stay the preset's). The estimator rounds times to whole nanoseconds."""
    if profile.kind != "qdk-estimator":
        raise ValueError(f"profile must be of kind 'qdk-estimator', got {profile.kind!r}")
    if min(profile.t_2q_s, profile.t_meas_s) < 1.0 / NS_PER_S:
        raise ValueError("t_2q_s and t_meas_s must be at least 1e-9 s for the qdk estimator "
                         f"(it counts whole nanoseconds), got {profile.t_2q_s}, "
                         f"{profile.t_meas_s}")
    p = profile.physical_error_rate
    return {
        "name": profile.qdk_qubit_params,
        "twoQubitGateTime": _ns(profile.t_2q_s),
        "oneQubitMeasurementTime": _ns(profile.t_meas_s),
        "oneQubitGateErrorRate": p,
        "twoQubitGateErrorRate": p,
        "oneQubitMeasurementErrorRate": p,
        "idleErrorRate": p,
    }


def estimator_params(profile: HardwareProfile) -> dict[str, Any]:
    """The estimator's parameters for ``profile``: :func:`qubit_params`, the gate-based surface
    code (distance search up to :data:`QDK_MAX_CODE_DISTANCE`) and the profile's error budget."""
    return {
        "qubitParams": qubit_params(profile),
        "qecScheme": {"name": "surface_code", "maxCodeDistance": QDK_MAX_CODE_DISTANCE},
        "errorBudget": profile.error_budget,
    }


def run_estimator(counts: dict[str, int], params: dict[str, Any]) -> dict[str, Any]:
    """``qdk.estimator.LogicalCounts(counts).estimate(params)`` as a plain dict (cached)."""
    return json.loads(_estimate(json.dumps(counts, sort_keys=True),
                                json.dumps(params, sort_keys=True)))


@functools.lru_cache(maxsize=4096)
def _estimate(counts_json: str, params_json: str) -> str:
    estimator = require_qdk()
    result = estimator.LogicalCounts(json.loads(counts_json)).estimate(json.loads(params_json))
    data = result.data() if hasattr(result, "data") else result
    return json.dumps(data)


def qdk_estimate(n: int, d: int, queries: float, profile: HardwareProfile, *,
                 toffolis: float | None = None, algorithmic: int | None = None) -> QdkEstimate:
    """The ``qdk`` estimator's resources for one QLSA run of ``queries`` queries on an N×N system
    of row sparsity d: the logical counts are ours (:func:`~qnewton.quantum.fault_tolerant.
    algorithmic_qubits`, :func:`~qnewton.quantum.fault_tolerant.toffolis_per_query` · queries
    CCZs); the rest is the estimator's. Raises :class:`QdkUnavailableError` without ``qdk`` and
    ValueError when the counts are beyond the estimator's range.
    """
    params = estimator_params(profile)
    q = check_positive("queries", queries)
    counts = qlsa_logical_counts(n, d, q, profile, toffolis=toffolis, qubits=algorithmic)
    qubits, ccz = counts.num_qubits, counts.ccz_count
    if ccz > MAX_CCZ_COUNT:
        raise ValueError(f"the qdk estimator takes at most {MAX_CCZ_COUNT} CCZ gates; this run "
                         f"has {ccz:.3g} (n={n}, d={d}, queries={q:.3g})")
    require_qdk(profile.name)
    try:
        data = run_estimator(counts.qdk_logical_counts(), params)
    except QdkUnavailableError:
        raise
    except Exception as exc:  # the estimator's own error type (QSharpError) is not importable
        raise ValueError(f"the qdk estimator rejected n={n}, d={d}, queries={q:.3g} on profile "
                         f"{profile.name!r}: {exc}") from None
    counts = data["physicalCounts"]
    breakdown = counts["breakdown"]
    cycle_ns = data["logicalQubit"]["logicalCycleTime"]
    if breakdown["logicalDepth"] * cycle_ns > MAX_RUNTIME_NS:  # its u64 runtime wraps around
        raise ValueError(f"the qdk estimator counts runtimes in u64 nanoseconds (at most "
                         f"{MAX_RUNTIME_NS / NS_PER_S:.3g} s); this run needs "
                         f"{breakdown['logicalDepth'] * cycle_ns / NS_PER_S:.3g} s "
                         f"(n={n}, d={d}, queries={q:.3g})")
    return QdkEstimate(
        estimator=f"qdk:{profile.qdk_qubit_params}",
        algorithmic_qubits=qubits,
        ccz_count=ccz,
        runtime_seconds=counts["runtime"] / NS_PER_S,
        code_distance=int(data["logicalQubit"]["codeDistance"]),
        logical_qubits=int(breakdown["algorithmicLogicalQubits"]),
        logical_cycle_seconds=cycle_ns / NS_PER_S,
        physical_qubits=int(counts["physicalQubits"]),
        factories=int(breakdown["numTfactories"]),
        factory_physical_qubits=int(breakdown["physicalQubitsForTfactories"]),
    )
