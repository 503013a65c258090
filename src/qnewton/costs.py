"""Costs: documented time models for quantum (modeled) and classical (calibrated) linear solves.

Stage "costs" of the pipeline (DESIGN §3, §4.3–§4.5). Everything here is a small pure function of
its inputs; the registries are read-only mappings and there is no global mutable state.

Three parts:

1. **QLSA query counts** (DESIGN §4.3): :data:`QLSA_MODELS`, :func:`qlsa_queries`. A *query* is one
   call to the block-encoding of ``A/α`` (or its inverse/controlled version).
2. **Hardware profiles** (DESIGN §4.4): :class:`HardwareProfile`, :data:`HARDWARE_PROFILES`,
   :func:`get_profile`, :func:`profile_from_dict`, :func:`quantum_cost`. They turn queries into
   **modeled** seconds — no quantum computer is ever run; every time produced by these functions is
   the output of a cost model on a named profile, never a measurement.
3. **Classical time** (DESIGN §4.5): :class:`MachineRates`, :func:`calibrate` (a short probe on the
   running machine, cached), and the per-solver predictions :func:`cholesky_seconds`,
   :func:`lu_seconds`, :func:`inverse_seconds`, :func:`cg_seconds`, :func:`woodbury_seconds`,
   :func:`classical_costs`, :func:`best_classical`. These are *predicted* seconds from calibrated
   rates (the scheduler's estimate); measured wall-clock times come from the solvers themselves.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "ATTOSECOND",
    "HARDWARE_PROFILES",
    "QLSA_MODELS",
    "READOUT_MODES",
    "FaultTolerantEstimate",
    "HardwareProfile",
    "MachineRates",
    "QLSAModel",
    "QuantumCost",
    "best_classical",
    "block_encoding_alpha",
    "calibrate",
    "cg_iterations",
    "cg_seconds",
    "cholesky_seconds",
    "classical_costs",
    "code_distance",
    "costa_queries",
    "dalzell_queries",
    "default_cache_dir",
    "fault_tolerant_estimate",
    "get_profile",
    "hhl_queries",
    "inverse_seconds",
    "jennings_queries",
    "jennings_release_queries",
    "logical_qubits",
    "lu_seconds",
    "profile_from_dict",
    "qlsa_queries",
    "qsvt_queries",
    "quantum_cost",
    "readout_runs",
    "toffolis_per_query",
    "woodbury_seconds",
]

#: One attosecond in seconds: the paper's hypothetical per-gate time ("attosecond physics").
ATTOSECOND = 1e-18

#: Readout modes understood by :func:`quantum_cost`.
READOUT_MODES = ("state", "vector")

# Surface-code logical error model (Azure resource estimator / Beverland et al. arXiv 2211.07629):
# logical error per qubit per logical cycle = A·(p/p_th)^((d+1)/2).
SURFACE_CODE_PREFACTOR = 0.03
SURFACE_CODE_THRESHOLD = 0.01
#: Logical cycles charged per Toffoli (lattice-surgery CCZ consumption, DESIGN §4.4).
LOGICAL_CYCLES_PER_TOFFOLI = 3
#: Extra logical qubits of the QLSA itself (block-encoding flag/ancilla qubits, adiabatic or
#: filtering control qubits, Toffoli workspace). A round, documented number.
QLSA_ANCILLA_QUBITS = 10
_MAX_CODE_DISTANCE = 2001


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    try:
        return int(x) == x and not isinstance(x, float | complex)
    except (TypeError, ValueError):
        return False


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _check_qlsa_args(kappa: Any, eps: Any, alpha: Any) -> tuple[float, float, float]:
    try:
        k = float(kappa)
    except (TypeError, ValueError):
        raise ValueError(f"kappa must be a finite number >= 1, got {kappa!r}") from None
    if not (math.isfinite(k) and k >= 1.0):
        raise ValueError(f"kappa must be a finite number >= 1, got {kappa!r}")
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number with 0 < eps < 1, got {eps!r}") from None
    if not (0.0 < e < 1.0):
        raise ValueError(f"eps must be a number with 0 < eps < 1, got {eps!r}")
    a = _check_positive("alpha", alpha)
    return k, e, a


def _ceil_log2(n: int) -> int:
    """⌈log₂ n⌉ for an integer n ≥ 1 (0 for n = 1), exact for large n."""
    return (int(n) - 1).bit_length()


# --------------------------------------------------------------------------------------------
# 1. QLSA query-count models (DESIGN §4.3)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QLSAModel:
    """A named query-count model of a quantum linear-system algorithm.

    Attributes:
        name: registry key, e.g. ``"jennings"``.
        source: paper(s) and arXiv id(s) the formula comes from.
        description: the formula in words, its constants and its domain.
        queries: ``queries(kappa, eps, alpha) -> float``, the number of block-encoding queries
            (dimensionless count) to prepare ``|x⟩ ∝ A⁻¹|b⟩`` to ℓ₂ error ``eps``.
    """

    name: str
    source: str
    description: str
    queries: Callable[[float, float, float], float]


#: Domain of the Jennings et al. bound as used in practice.
JENNINGS_MIN_KAPPA = math.sqrt(12.0)
JENNINGS_MAX_EPS = 0.24


def _jennings_qstar(kappa: float, eps: float, alpha: float) -> float:
    """Q* of Jennings et al. (arXiv 2305.11352 v1), before the success-probability factor."""
    log_term = math.log(2.0 * kappa + 3.0)
    return (
        (1741.0 * alpha * math.e / 500.0)
        * math.sqrt(kappa * kappa + 1.0)
        * ((133.0 / 125.0 + 4.0 / (25.0 * kappa ** (1.0 / 3.0))) * math.pi * log_term + 1.0)
        + (351.0 / 50.0) * log_term**2 * (math.log(451.0 * log_term**2 / eps) + 1.0)
        + alpha * kappa * math.log(32.0 / eps)
    )


def _jennings_expected(kappa: float, eps: float, alpha: float) -> float:
    """The raw published expectation ``Q*/(0.39 − 0.201·ε)`` (no domain handling)."""
    denominator = 0.39 - 0.201 * eps
    if denominator <= 0:  # unreachable for 0 < eps < 1; kept as an explicit guard
        raise ValueError(f"eps must be < 0.39/0.201 for the Jennings bound, got {eps!r}")
    return _jennings_qstar(kappa, eps, alpha) / denominator


def _jennings_optimal_eps(kappa: float, eps_cap: float, alpha: float) -> float:
    """``argmin`` of :func:`_jennings_expected` over ``ε' ∈ (0, eps_cap]`` (κ, α fixed).

    With ``Q*(ε) = C − B·ln ε`` (``B = (351/50)·L² + α·κ``) and ``D(ε) = 0.39 − 0.201·ε``, the sign
    of d/dε [Q*/D] is the sign of ``h(ε) = 0.201·ε·Q*(ε) − B·D(ε)``, and ``h' = 0.201·Q* > 0``: the
    expectation is unimodal in ε (decreasing, then increasing), so the minimizer is ``eps_cap``
    if ``h(eps_cap) ≤ 0`` and otherwise the root of h, found by bisection in log ε.
    """
    log_term = math.log(2.0 * kappa + 3.0)
    slope = (351.0 / 50.0) * log_term**2 + alpha * kappa

    def h(e: float) -> float:
        return 0.201 * e * _jennings_qstar(kappa, e, alpha) - slope * (0.39 - 0.201 * e)

    if h(eps_cap) <= 0.0:
        return eps_cap
    lo, hi = math.log(1e-300), math.log(eps_cap)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if h(math.exp(mid)) <= 0.0:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


def jennings_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Expected query count of Jennings, Lostaglio, Pallister, Sornborger, Subaşı.

    Source: arXiv 2305.11352 v1 (the formula the Q-Newton release carries). With
    ``L = ln(2κ+3)``::

        Q* = (1741·α·e/500)·√(κ²+1)·[(133/125 + 4/(25·κ^{1/3}))·π·L + 1]
             + (351/50)·L²·[ln(451·L²/ε) + 1] + α·κ·ln(32/ε)
        E[Q](κ, ε) = Q* / (0.39 − 0.201·ε)

    Inputs: ``kappa`` condition number of A (≥ 1), ``eps`` target ℓ₂ error of ``|x⟩``
    (0 < ε < 1), ``alpha`` block-encoding normalization (α ≥ ‖A‖₂ in units of ‖A‖₂, > 0).
    Output: expected number of block-encoding queries (dimensionless).

    Domain and monotone envelope (documented choices):

    * The bound is proven for κ ≥ √12 and used for ε ≤ 0.24; outside, the model is evaluated at
      ``max(κ, √12)`` and ``min(ε, 0.24)``.
    * The published expectation is *not* monotone in ε: the success-probability factor
      ``1/(0.39 − 0.201·ε)`` grows faster than ``Q*`` falls, so e.g. at κ = 1e4 the count is
      smallest near ε ≈ 5e-3 and rises again towards ε = 1e-2. Because a run with a tighter target
      also meets a looser one, we return ``min over ε' ≤ ε`` of the formula; E[Q] is unimodal in
      ε, so this is the formula at ``min(ε, ε*)`` (see :func:`_jennings_optimal_eps`).

    Both choices only ever use a run that provably solves the requested instance, so the count
    stays a valid, finite model, non-decreasing in κ and in 1/ε. The denominator
    ``0.39 − 0.201·ε`` is positive for every accepted ε (it vanishes only at ε ≈ 1.94).
    Known values (α = 1, ε = 1e-2): κ = 1e2 → ≈5.69e4 (formula unchanged there), κ = 1e4 →
    ≈8.61e6 (8.6099e6 after the envelope vs 8.6131e6 for the raw formula).
    """
    k, e, a = _check_qlsa_args(kappa, eps, alpha)
    k = max(k, JENNINGS_MIN_KAPPA)
    e_used = _jennings_optimal_eps(k, min(e, JENNINGS_MAX_EPS), a)
    return _jennings_expected(k, e_used, a)


def jennings_release_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Release-compatible Jennings count: ``α · jennings_queries(κ, ε, α)`` (cost ∝ α²κ).

    The Q-Newton code release (UNITES-Lab/q-newton, arXiv 2405.00252) multiplies the whole
    Jennings expression by α a second time. This is a transcription bug (DESIGN §6); it is offered
    only to reproduce the release's numbers. Identical to ``"jennings"`` at α = 1.
    """
    k, e, a = _check_qlsa_args(kappa, eps, alpha)
    return a * jennings_queries(k, e, a)


def dalzell_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Dalzell's explicit QLSA bound (arXiv 2406.12086): ``Q ≈ α·κ·(56 + 1.05·ln(1/ε))``.

    Inputs as in :func:`jennings_queries`; the effective condition number seen by the algorithm is
    ``α·κ``. Output: block-encoding queries (dimensionless).
    """
    k, e, a = _check_qlsa_args(kappa, eps, alpha)
    return a * k * (56.0 + 1.05 * math.log(1.0 / e))


#: Walk-step constant of the discrete adiabatic QLSA (Costa et al. arXiv 2111.08152).
COSTA_WALK_CONSTANT = 2305.0


def costa_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Discrete-adiabatic QLSA (Costa, An, Sanders, Su, Babbush, Berry, arXiv 2111.08152).

    Explicit form used here, with ``κ' = α·κ``::

        Q = κ'·(2305 + 2·ln(2/ε))

    ``2305·κ'`` walk steps for the adiabatic stage (their explicit constant, reaching a constant
    overlap with the solution) followed by eigenstate filtering of degree ≈ ``2·κ'·ln(2/ε)``
    (Lin & Tong, arXiv 1910.14596) that boosts the accuracy to ε. Optimal O(κ·log(1/ε)) scaling
    with a large constant. Output: block-encoding queries (dimensionless).
    """
    k, e, a = _check_qlsa_args(kappa, eps, alpha)
    kk = a * k
    return kk * (COSTA_WALK_CONSTANT + 2.0 * math.log(2.0 / e))


def hhl_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """HHL-type scaling (Harrow, Hassidim, Lloyd, arXiv 0811.3171): ``Q = (α·κ)²/ε``.

    Phase estimation to relative precision ε on eigenvalues down to 1/κ' costs O(κ'/ε) Hamiltonian
    simulation time, repeated O(κ') times by amplitude amplification (κ' = α·κ). The constant is
    set to 1 (documented choice: HHL gives no explicit constant), so this is an optimistic count
    of its leading term. Output: queries (dimensionless).
    """
    k, e, a = _check_qlsa_args(kappa, eps, alpha)
    return (a * k) ** 2 / e


def qsvt_queries(kappa: float, eps: float, alpha: float = 1.0) -> float:
    """QSVT matrix-inversion polynomial degree: ``Q = κ'·ln(κ'/ε)`` with ``κ' = α·κ``, constant 1.

    Sources: Gilyén, Su, Low, Wiebe (arXiv 1806.01838) and Martyn, Rossi, Tan, Chuang
    (arXiv 2105.02859): an ε-approximation of 1/x on [1/κ', 1] needs degree O(κ'·log(κ'/ε)), one
    query per degree. Constant 1 is a documented, optimistic choice; success-probability
    amplification (another factor up to κ', or variable-time amplification) is not included, so
    this is a lower-bound-style count for a QSVT solver. Output: queries (dimensionless).
    """
    k, e, a = _check_qlsa_args(kappa, eps, alpha)
    kk = a * k
    return kk * math.log(kk / e)


QLSA_MODELS: Mapping[str, QLSAModel] = MappingProxyType(
    {
        "jennings": QLSAModel(
            name="jennings",
            source="Jennings, Lostaglio, Pallister, Sornborger, Subaşı, arXiv 2305.11352 v1",
            description=(
                "Expected queries Q*/(0.39-0.201·ε), Q* ≈ 3.48·e·α·κ·π·ln(2κ+3)-type leading "
                "term; evaluated at max(κ,√12), min(ε,0.24)."
            ),
            queries=jennings_queries,
        ),
        "jennings-release": QLSAModel(
            name="jennings-release",
            source="Q-Newton code release (UNITES-Lab/q-newton), transcribing arXiv 2305.11352",
            description=(
                "Release-compatible variant: α × jennings (cost ∝ α²κ). Multiplying by α twice is "
                "a transcription bug in the release; use only to reproduce its numbers."
            ),
            queries=jennings_release_queries,
        ),
        "dalzell": QLSAModel(
            name="dalzell",
            source="Dalzell, arXiv 2406.12086",
            description="Q = α·κ·(56 + 1.05·ln(1/ε)), best explicit bound.",
            queries=dalzell_queries,
        ),
        "costa": QLSAModel(
            name="costa",
            source="Costa et al., arXiv 2111.08152; filtering: Lin & Tong, arXiv 1910.14596",
            description="Discrete adiabatic: Q = ακ·(2305 + 2·ln(2/ε)).",
            queries=costa_queries,
        ),
        "hhl": QLSAModel(
            name="hhl",
            source="Harrow, Hassidim, Lloyd, arXiv 0811.3171",
            description="HHL-type Q = (ακ)²/ε, constant 1 (optimistic leading term).",
            queries=hhl_queries,
        ),
        "qsvt": QLSAModel(
            name="qsvt",
            source="Gilyén et al. arXiv 1806.01838; Martyn et al. arXiv 2105.02859",
            description=(
                "QSVT inversion polynomial degree Q = ακ·ln(ακ/ε), constant 1; amplification "
                "of the success probability not included."
            ),
            queries=qsvt_queries,
        ),
    }
)


def qlsa_queries(name: str, kappa: float, eps: float, alpha: float = 1.0) -> float:
    """Query count of the QLSA model ``name`` (a key of :data:`QLSA_MODELS`).

    Raises ValueError for an unknown name (listing the allowed names) or invalid κ, ε, α.
    """
    model = QLSA_MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        allowed = ", ".join(sorted(QLSA_MODELS))
        raise ValueError(f"qlsa must be one of {allowed}; got {name!r}")
    return float(model.queries(kappa, eps, alpha))


def block_encoding_alpha(d: int, max_abs_entry: float, spectral_norm: float) -> float:
    """Block-encoding normalization of a sparse-access oracle (DESIGN §4.1).

    ``α = max(1, d·max|Aᵢⱼ| / ‖A‖₂)``: the sparse-access block encoding encodes ``A/(d·max|Aᵢⱼ|)``,
    so after scaling A to ‖A‖₂ = 1 the QLSA sees the effective condition number α·κ.
    Inputs: ``d`` max nonzeros per row (≥ 1), ``max_abs_entry`` largest |Aᵢⱼ| (> 0, units of A),
    ``spectral_norm`` ‖A‖₂ (> 0, same units). Output: α (dimensionless, ≥ 1).
    """
    d = _check_int("d", d, 1)
    m = _check_positive("max_abs_entry", max_abs_entry)
    s = _check_positive("spectral_norm", spectral_norm)
    return max(1.0, d * m / s)


# --------------------------------------------------------------------------------------------
# 2. Hardware profiles (DESIGN §4.4)
# --------------------------------------------------------------------------------------------

_PROFILE_KINDS = ("gate-count", "fault-tolerant")


@dataclass(frozen=True)
class HardwareProfile:
    """Assumptions that turn QLSA queries into **modeled** seconds.

    Attributes:
        name: profile name (registry key for presets).
        kind: ``"gate-count"`` (paper style: ⌈log₂N⌉ gates of ``gate_time_s`` per query, no error
            correction) or ``"fault-tolerant"`` (surface code, QROAM data access; DESIGN §4.4).
        description: one line on what the profile assumes.
        gate_time_s: seconds per gate, gate-count profiles only (``None`` otherwise).
        t_2q_s: physical two-qubit gate time in seconds (fault-tolerant only).
        t_meas_s: physical measurement time in seconds (fault-tolerant only).
        physical_error_rate: physical error rate p, 0 < p < 0.01 (fault-tolerant only).
        error_budget: allowed logical failure probability of one QLSA run (fault-tolerant only).
        bits_per_entry: data bits per stored matrix/vector entry (w_data).
        loading_bandwidth_bytes_per_s: classical bandwidth for loading A and b into the machine.
        charge_loading: whether :func:`quantum_cost` charges the data-loading time.
        default_readout: ``"state"`` (|x⟩ is the output, free) or ``"vector"`` (tomography).
        readout_error: ℓ₂ tomography error δ used by ``"vector"`` readout (0 < δ < 1).
    """

    name: str
    kind: str
    description: str = ""
    gate_time_s: float | None = None
    t_2q_s: float | None = None
    t_meas_s: float | None = None
    physical_error_rate: float | None = None
    error_budget: float = 1e-3
    bits_per_entry: int = 16
    loading_bandwidth_bytes_per_s: float = 1e10
    charge_loading: bool = False
    default_readout: str = "state"
    readout_error: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if self.kind not in _PROFILE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(_PROFILE_KINDS)}; got {self.kind!r}")
        if self.kind == "gate-count":
            _check_positive("gate_time_s", self.gate_time_s)
        else:
            _check_positive("t_2q_s", self.t_2q_s)
            _check_positive("t_meas_s", self.t_meas_s)
            p = self.physical_error_rate
            if not (isinstance(p, int | float) and 0 < p < SURFACE_CODE_THRESHOLD):
                raise ValueError(
                    "physical_error_rate must be a number with 0 < p < "
                    f"{SURFACE_CODE_THRESHOLD} (surface-code threshold), got {p!r}"
                )
        b = self.error_budget
        if not (isinstance(b, int | float) and 0 < b < 1):
            raise ValueError(f"error_budget must be a number with 0 < budget < 1, got {b!r}")
        _check_int("bits_per_entry", self.bits_per_entry, 1)
        _check_positive("loading_bandwidth_bytes_per_s", self.loading_bandwidth_bytes_per_s)
        if not isinstance(self.charge_loading, bool):
            raise ValueError(f"charge_loading must be True or False, got {self.charge_loading!r}")
        if self.default_readout not in READOUT_MODES:
            raise ValueError(
                f"default_readout must be one of {', '.join(READOUT_MODES)}; "
                f"got {self.default_readout!r}"
            )
        d = self.readout_error
        if not (isinstance(d, int | float) and 0 < d < 1):
            raise ValueError(f"readout_error must be a number with 0 < δ < 1, got {d!r}")

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serializable dict (inverse of :func:`profile_from_dict`)."""
        return dataclasses.asdict(self)


_PROFILE_FIELDS = tuple(f.name for f in dataclasses.fields(HardwareProfile))

HARDWARE_PROFILES: Mapping[str, HardwareProfile] = MappingProxyType(
    {
        "paper": HardwareProfile(
            name="paper",
            kind="gate-count",
            description=(
                "Paper-style (arXiv 2405.00252): ⌈log₂N⌉ gates per query at a fixed gate time "
                "(default 1 ns, an optimistic future device; the paper's attosecond hypothesis is "
                "gate_time_s=ATTOSECOND), no error correction, no data loading, free readout."
            ),
            gate_time_s=1e-9,
            charge_loading=False,
            default_readout="state",
        ),
        "surface-code": HardwareProfile(
            name="surface-code",
            kind="fault-tolerant",
            description=(
                "Surface-code superconducting qubits, realistic: t_2q 50 ns, t_meas 100 ns, "
                "p 1e-3 (≈35 µs per Toffoli); QROAM data access, loading and vector readout "
                "charged."
            ),
            t_2q_s=50e-9,
            t_meas_s=100e-9,
            physical_error_rate=1e-3,
            charge_loading=True,
            default_readout="vector",
        ),
        "surface-code-optimistic": HardwareProfile(
            name="surface-code-optimistic",
            kind="fault-tolerant",
            description=(
                "Surface-code superconducting qubits, optimistic: t_2q 50 ns, t_meas 100 ns, "
                "p 1e-4 (≈18 µs per Toffoli); loading and vector readout charged."
            ),
            t_2q_s=50e-9,
            t_meas_s=100e-9,
            physical_error_rate=1e-4,
            charge_loading=True,
            default_readout="vector",
        ),
        "trapped-ion": HardwareProfile(
            name="trapped-ion",
            kind="fault-tolerant",
            description=(
                "Surface-code trapped ions: t_2q 100 µs, t_meas 100 µs, p 1e-3 (logical cycle "
                "600 µs·d; ≈50 ms per Toffoli at d≈27–29); loading and vector readout charged."
            ),
            t_2q_s=100e-6,
            t_meas_s=100e-6,
            physical_error_rate=1e-3,
            charge_loading=True,
            default_readout="vector",
        ),
    }
)


def get_profile(name: str, **overrides: Any) -> HardwareProfile:
    """A preset from :data:`HARDWARE_PROFILES`, with fields replaced by ``overrides``.

    Example: ``get_profile("paper", gate_time_s=ATTOSECOND)``. Overridden values are validated
    like the presets; unknown names or fields raise ValueError listing the allowed ones.
    """
    base = HARDWARE_PROFILES.get(name) if isinstance(name, str) else None
    if base is None:
        raise ValueError(
            f"profile must be one of {', '.join(sorted(HARDWARE_PROFILES))}; got {name!r}"
        )
    unknown = sorted(set(overrides) - set(_PROFILE_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown HardwareProfile field(s) {', '.join(unknown)}; "
            f"allowed fields: {', '.join(_PROFILE_FIELDS)}"
        )
    return dataclasses.replace(base, **overrides) if overrides else base


def profile_from_dict(d: Mapping[str, Any]) -> HardwareProfile:
    """A user-defined profile from a mapping (e.g. a JSON file).

    With key ``"base"`` naming a preset, the other keys override that preset
    (``{"base": "surface-code", "name": "my-sc", "physical_error_rate": 5e-4}``); without it, the
    mapping must give ``name`` and ``kind`` and the fields that kind requires.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"profile definition must be a mapping, got {type(d).__name__}")
    values = dict(d)
    base = values.pop("base", None)
    if base is not None:
        preset = get_profile(base)
        unknown = sorted(set(values) - set(_PROFILE_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown HardwareProfile field(s) {', '.join(unknown)}; "
                f"allowed fields: base, {', '.join(_PROFILE_FIELDS)}"
            )
        return dataclasses.replace(preset, **values)
    unknown = sorted(set(values) - set(_PROFILE_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown HardwareProfile field(s) {', '.join(unknown)}; "
            f"allowed fields: base, {', '.join(_PROFILE_FIELDS)}"
        )
    missing = [k for k in ("name", "kind") if k not in values]
    if missing:
        raise ValueError(
            f"profile definition needs {' and '.join(missing)} (or a 'base' preset: "
            f"{', '.join(sorted(HARDWARE_PROFILES))})"
        )
    return HardwareProfile(**values)


def _data_bits(n: int, profile: HardwareProfile) -> int:
    """w = bits_per_entry + ⌈log₂N⌉: value bits plus column-index bits of one stored entry."""
    return profile.bits_per_entry + _ceil_log2(n)


def toffolis_per_query(n: int, d: int, profile: HardwareProfile) -> float:
    """Toffoli gates per QLSA query on explicit classical data (DESIGN §4.4).

    ``T = 2√(N·d·w) + 2√(N·d) + 2·(2√(N·w_b) + 2√N)``: a QROAM read of the N·d stored entries of A
    with w = bits_per_entry + ⌈log₂N⌉ bits each (Low, Kliuchnikov, Schaeffer arXiv 1812.00954;
    Berry et al. arXiv 1902.02134), compute + uncompute, plus two preparations of |b⟩ with
    w_b = bits_per_entry bits per amplitude. Output: Toffolis (dimensionless).
    """
    n = _check_int("n", n, 1)
    d = _check_int("d", d, 1)
    w = _data_bits(n, profile)
    wb = profile.bits_per_entry
    matrix = 2.0 * math.sqrt(n * d * w) + 2.0 * math.sqrt(n * d)
    vector = 2.0 * (2.0 * math.sqrt(n * wb) + 2.0 * math.sqrt(n))
    return matrix + vector


def logical_qubits(n: int, d: int, profile: HardwareProfile) -> int:
    """Logical qubits of one QLSA run, including the surface-code layout overhead.

    Algorithmic qubits ``Q_alg = ⌈√(N·d·w)⌉ + 2⌈log₂N⌉ + w + 10``: the QROAM's ≈√(N·d·w) work
    qubits at its Toffoli-optimal block size, row and column index registers, the data register,
    and ``QLSA_ANCILLA_QUBITS`` = 10 further ancillas. Laid out for lattice surgery as in
    Beverland et al. (arXiv 2211.07629): ``Q = 2·Q_alg + ⌈√(8·Q_alg)⌉ + 1``.
    """
    n = _check_int("n", n, 1)
    d = _check_int("d", d, 1)
    w = _data_bits(n, profile)
    q_alg = math.ceil(math.sqrt(n * d * w)) + 2 * _ceil_log2(n) + w + QLSA_ANCILLA_QUBITS
    return 2 * q_alg + math.ceil(math.sqrt(8 * q_alg)) + 1


def code_distance(
    physical_error_rate: float, n_logical_qubits: int, logical_cycles: float, error_budget: float
) -> int:
    """Smallest odd surface-code distance meeting the error budget.

    ``d`` is the smallest odd d ≥ 3 with
    ``0.03·(p/0.01)^((d+1)/2) · (#logical qubits) · (#logical cycles) ≤ error_budget``
    (logical error model of the Azure resource estimator, Beverland et al. arXiv 2211.07629).
    The whole budget goes to logical (memory/gate) errors; magic-state factories are assumed to
    keep pace and are not counted. Raises ValueError if no d ≤ 2001 suffices.
    """
    p = physical_error_rate
    if not (isinstance(p, int | float) and 0 < p < SURFACE_CODE_THRESHOLD):
        raise ValueError(
            f"physical_error_rate must satisfy 0 < p < {SURFACE_CODE_THRESHOLD}, got {p!r}"
        )
    q = _check_int("n_logical_qubits", n_logical_qubits, 1)
    c = _check_positive("logical_cycles", logical_cycles)
    b = error_budget
    if not (isinstance(b, int | float) and 0 < b < 1):
        raise ValueError(f"error_budget must satisfy 0 < budget < 1, got {b!r}")
    ratio = p / SURFACE_CODE_THRESHOLD
    for dist in range(3, _MAX_CODE_DISTANCE + 1, 2):
        if SURFACE_CODE_PREFACTOR * ratio ** ((dist + 1) / 2) * q * c <= b:
            return dist
    raise ValueError(
        f"no code distance <= {_MAX_CODE_DISTANCE} meets error_budget={b} with p={p}, "
        f"{q} logical qubits and {c:.3g} logical cycles"
    )


@dataclass(frozen=True)
class FaultTolerantEstimate:
    """Surface-code resources of one QLSA run (all times **modeled** seconds).

    Attributes:
        toffolis_per_query: Toffolis per block-encoding query (:func:`toffolis_per_query`).
        logical_qubits: logical qubits incl. layout overhead (:func:`logical_qubits`).
        logical_cycles: logical cycles of one run = 3 · Toffolis per query · queries.
        code_distance: surface-code distance (:func:`code_distance`).
        logical_cycle_seconds: ``(4·t_2q + 2·t_meas)·code_distance``.
        toffoli_seconds: ``3 · logical_cycle_seconds``.
        seconds_per_query: ``toffolis_per_query · toffoli_seconds``.
    """

    toffolis_per_query: float
    logical_qubits: int
    logical_cycles: float
    code_distance: int
    logical_cycle_seconds: float
    toffoli_seconds: float
    seconds_per_query: float


def fault_tolerant_estimate(
    n: int, d: int, queries: float, profile: HardwareProfile
) -> FaultTolerantEstimate:
    """Surface-code time per query for a fault-tolerant profile (DESIGN §4.4).

    The code distance is chosen so that one complete QLSA run (``queries`` queries, i.e.
    3·T·queries logical cycles on :func:`logical_qubits` qubits) fails with probability at most
    ``profile.error_budget``. Toffolis are executed one after another (no Toffoli parallelism).
    Inputs: N, row sparsity d, query count, a ``"fault-tolerant"`` profile. Times are modeled.
    """
    if profile.kind != "fault-tolerant":
        raise ValueError(f"profile must be of kind 'fault-tolerant', got {profile.kind!r}")
    tof = toffolis_per_query(n, d, profile)
    qubits = logical_qubits(n, d, profile)
    cycles = LOGICAL_CYCLES_PER_TOFFOLI * tof * _check_positive("queries", queries)
    dist = code_distance(profile.physical_error_rate, qubits, cycles, profile.error_budget)
    cycle_s = (4.0 * profile.t_2q_s + 2.0 * profile.t_meas_s) * dist
    toffoli_s = LOGICAL_CYCLES_PER_TOFFOLI * cycle_s
    return FaultTolerantEstimate(
        toffolis_per_query=tof,
        logical_qubits=qubits,
        logical_cycles=cycles,
        code_distance=dist,
        logical_cycle_seconds=cycle_s,
        toffoli_seconds=toffoli_s,
        seconds_per_query=tof * toffoli_s,
    )


def readout_runs(n: int, readout: str, readout_error: float) -> int:
    """Full QLSA runs needed to read out the answer (DESIGN §4.4).

    * ``"state"``: the paper's assumption — the state |x⟩ itself is the output: 1 run.
    * ``"vector"``: ℓ₂ tomography of all N amplitudes to error δ from copies of |x⟩:
      ``⌈N·ln N / δ²⌉`` runs (at least 1) (Kerenidis & Prakash, arXiv 1808.09266). With
      amplitude estimation on the state-preparation unitary this drops to ≈ N·ln N/δ
      (van Apeldoorn, Cornelissen, Gilyén, Nannicini, arXiv 2207.08800); we use the sample-based
      count, which is the one a QLSA output state directly supports. The norm of x is recovered
      classically and is not charged.
    """
    n = _check_int("n", n, 1)
    if readout not in READOUT_MODES:
        raise ValueError(f"readout must be one of {', '.join(READOUT_MODES)}; got {readout!r}")
    if readout == "state":
        return 1
    if not (isinstance(readout_error, int | float) and 0 < readout_error < 1):
        raise ValueError(f"readout_error must satisfy 0 < δ < 1, got {readout_error!r}")
    return max(1, math.ceil(n * math.log(n) / readout_error**2))


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
) -> QuantumCost:
    """Modeled time of a QLSA solve of an N×N system with row sparsity d (DESIGN §4.3–§4.4).

    ``total = queries · seconds_per_query · runs + loading``, where

    * queries: :func:`qlsa_queries` ``(qlsa, κ, ε, α)``;
    * seconds_per_query: gate-count profiles ``max(1, ⌈log₂N⌉) · gate_time_s``; fault-tolerant
      profiles ``Toffolis/query · Toffoli time`` (:func:`fault_tolerant_estimate`);
    * runs: :func:`readout_runs` for ``readout`` (default: the profile's ``default_readout``);
    * loading (only if ``profile.charge_loading``): ``(nnz·w + N·w_b)/8`` bytes (A's entries with
      column indices, w = bits_per_entry + ⌈log₂N⌉, plus b) at ``loading_bandwidth_bytes_per_s``,
      once per solve; ``nnz`` defaults to the upper bound N·d.

    Inputs: n ≥ 1, 1 ≤ d ≤ n, kappa ≥ 1, 0 < eps < 1, alpha > 0, nnz in [1, n·d]. Every time is a
    modeled number of seconds on ``profile``, not a measurement.
    """
    n = _check_int("n", n, 1)
    d = _check_int("d", d, 1)
    if d > n:
        raise ValueError(f"d must satisfy 1 <= d <= n (n={n}), got {d}")
    k, e, a = _check_qlsa_args(kappa, eps, alpha)
    if not isinstance(profile, HardwareProfile):
        raise ValueError(f"profile must be a HardwareProfile, got {type(profile).__name__}")
    mode = profile.default_readout if readout is None else readout
    if mode not in READOUT_MODES:
        raise ValueError(f"readout must be one of {', '.join(READOUT_MODES)}; got {readout!r}")
    if nnz is None:
        nnz = n * d
    nnz = _check_int("nnz", nnz, 1)
    if nnz > n * d:
        raise ValueError(f"nnz must be <= n·d = {n * d}, got {nnz}")

    q = qlsa_queries(qlsa, k, e, a)
    runs = readout_runs(n, mode, profile.readout_error)
    ft: FaultTolerantEstimate | None = None
    if profile.kind == "gate-count":
        per_query = max(1, _ceil_log2(n)) * float(profile.gate_time_s)
    else:
        ft = fault_tolerant_estimate(n, d, q, profile)
        per_query = ft.seconds_per_query
    solve = q * per_query * runs
    loading = 0.0
    if profile.charge_loading:
        nbytes = (nnz * _data_bits(n, profile) + n * profile.bits_per_entry) / 8.0
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
        toffolis_per_query=None if ft is None else ft.toffolis_per_query,
        toffoli_seconds=None if ft is None else ft.toffoli_seconds,
        code_distance=None if ft is None else ft.code_distance,
        logical_qubits=None if ft is None else ft.logical_qubits,
    )


# --------------------------------------------------------------------------------------------
# 3. Classical time models (DESIGN §4.5)
# --------------------------------------------------------------------------------------------

_RATE_SOURCES = ("calibrated", "cache", "user")

#: Bandwidth assumed by :meth:`MachineRates.user` when the user gives only flop rates. A
#: documented placeholder for user-specified rates, never used as this machine's measured rate.
USER_DEFAULT_BANDWIDTH_BYTES_PER_S = 1e10


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class MachineRates:
    """Throughput of the machine the classical solvers run on.

    Attributes:
        dense_flops_per_s: fp64 dense factorization rate (Cholesky factor + solve), flop/s.
        gemm_flops_per_s: fp64 matrix-multiply rate, flop/s.
        bandwidth_bytes_per_s: streaming memory bandwidth seen by a dense matvec, bytes/s.
        source: ``"calibrated"`` (just measured), ``"cache"`` (read back) or ``"user"``.
        host: host name the rates belong to.
        torch_version: torch version they were measured with.
        threads: ``torch.get_num_threads()`` at measurement time.
        measured_at: ISO-8601 time of the measurement (or of creation for user rates).
        call_overhead_s: fixed seconds of one solver call on a tiny system (framework and Python
            latency; dominates for N ≲ 100). Added once to every classical prediction.
        iteration_overhead_s: fixed seconds per CG iteration beyond its memory traffic.
    """

    dense_flops_per_s: float
    gemm_flops_per_s: float
    bandwidth_bytes_per_s: float
    source: str = "user"
    host: str = ""
    torch_version: str = ""
    threads: int = 0
    measured_at: str = ""
    call_overhead_s: float = 0.0
    iteration_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("dense_flops_per_s", self.dense_flops_per_s)
        _check_positive("gemm_flops_per_s", self.gemm_flops_per_s)
        _check_positive("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)
        if self.source not in _RATE_SOURCES:
            raise ValueError(
                f"source must be one of {', '.join(_RATE_SOURCES)}; got {self.source!r}"
            )
        _check_int("threads", self.threads, 0)
        for name in ("call_overhead_s", "iteration_overhead_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def user(
        cls,
        dense_flops_per_s: float,
        gemm_flops_per_s: float | None = None,
        bandwidth_bytes_per_s: float | None = None,
    ) -> MachineRates:
        """User-specified rates; gemm defaults to the dense rate, bandwidth to 1e10 B/s."""
        return cls(
            dense_flops_per_s=dense_flops_per_s,
            gemm_flops_per_s=dense_flops_per_s if gemm_flops_per_s is None else gemm_flops_per_s,
            bandwidth_bytes_per_s=(
                USER_DEFAULT_BANDWIDTH_BYTES_PER_S
                if bandwidth_bytes_per_s is None
                else bandwidth_bytes_per_s
            ),
            source="user",
            measured_at=_now_iso(),
        )

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serializable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MachineRates:
        """Inverse of :meth:`to_dict`; unknown keys or invalid values raise ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"rates must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"unknown MachineRates field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(names))}"
            )
        try:
            return cls(**dict(d))
        except TypeError as exc:  # missing required fields
            raise ValueError(f"invalid MachineRates definition: {exc}") from None


def _check_rates(rates: Any) -> MachineRates:
    if not isinstance(rates, MachineRates):
        raise ValueError(f"rates must be a MachineRates, got {type(rates).__name__}")
    return rates


def cholesky_flops(n: int) -> float:
    """Flops of a dense Cholesky solve: ``N³/3 + 2N²`` (factor + two triangular solves)."""
    n = _check_int("n", n, 1)
    return n**3 / 3.0 + 2.0 * n**2


def cholesky_seconds(n: int, rates: MachineRates) -> float:
    """Predicted seconds of a dense fp64 Cholesky solve: ``(N³/3 + 2N²) / R_dense + t_call``."""
    r = _check_rates(rates)
    return cholesky_flops(n) / r.dense_flops_per_s + r.call_overhead_s


def lu_seconds(n: int, rates: MachineRates) -> float:
    """Predicted seconds of a dense fp64 LU solve: ``(2N³/3 + 2N²) / R_dense + t_call``."""
    n = _check_int("n", n, 1)
    r = _check_rates(rates)
    return (2.0 * n**3 / 3.0 + 2.0 * n**2) / r.dense_flops_per_s + r.call_overhead_s


def inverse_seconds(n: int, rates: MachineRates) -> float:
    """Predicted seconds of an explicit inverse then matvec (the release's approach).

    ``(2N³ + 2N²) / R_dense + t_call`` — about 6× a Cholesky solve.
    """
    n = _check_int("n", n, 1)
    r = _check_rates(rates)
    return (2.0 * n**3 + 2.0 * n**2) / r.dense_flops_per_s + r.call_overhead_s


def cg_iterations(kappa: float, eps: float) -> int:
    """CG iterations to reduce the A-norm error by ε: ``⌈½·√κ·ln(2/ε)⌉`` (at least 1)."""
    k, e, _ = _check_qlsa_args(kappa, eps, 1.0)
    return max(1, math.ceil(0.5 * math.sqrt(k) * math.log(2.0 / e)))


def cg_seconds(n: int, nnz: int, kappa: float, eps: float, rates: MachineRates) -> float:
    """Predicted seconds of conjugate gradients (memory-bandwidth bound, roofline).

    ``iterations = ⌈½·√κ·ln(2/ε)⌉``; per iteration one pass over A plus the vector updates:

    * bytes = ``8·nnz`` (fp64 values) ``+ 4·nnz + 4·(N+1)`` (CSR indices, only if nnz < N²)
      ``+ 8·8·N`` (≈8 fp64 vector reads/writes: x, r, p, Ap);
    * flops = ``2·nnz + 10·N``;
    * seconds = ``iterations · (max(bytes / bandwidth, flops / R_gemm) + t_iter) + t_call``.

    Inputs: N ≥ 1, 1 ≤ nnz ≤ N², κ ≥ 1, 0 < ε < 1.
    """
    n = _check_int("n", n, 1)
    nnz = _check_int("nnz", nnz, 1)
    if nnz > n * n:
        raise ValueError(f"nnz must be <= n² = {n * n}, got {nnz}")
    r = _check_rates(rates)
    iters = cg_iterations(kappa, eps)
    nbytes = 8.0 * nnz + 64.0 * n
    if nnz < n * n:
        nbytes += 4.0 * nnz + 4.0 * (n + 1)
    flops = 2.0 * nnz + 10.0 * n
    per_iteration = max(nbytes / r.bandwidth_bytes_per_s, flops / r.gemm_flops_per_s)
    return iters * (per_iteration + r.iteration_overhead_s) + r.call_overhead_s


def woodbury_seconds(n: int, rank: int, rates: MachineRates) -> float:
    """Predicted seconds of a Woodbury solve of ``A = s·JᵀJ + λI``, ``J ∈ R^{B×N}``.

    ``2·N·B² / R_gemm`` (forming J Jᵀ) ``+ (B³/3 + 2B²) / R_dense`` (Cholesky solve of the B×B
    capacitance matrix) ``+ 2·8·N·B / bandwidth`` (the passes ``J b`` and ``Jᵀ y``) ``+ t_call``.
    Inputs: N ≥ 1, rank B ≥ 1.
    """
    n = _check_int("n", n, 1)
    b = _check_int("rank", rank, 1)
    r = _check_rates(rates)
    return (
        2.0 * n * b * b / r.gemm_flops_per_s
        + (b**3 / 3.0 + 2.0 * b * b) / r.dense_flops_per_s
        + 16.0 * n * b / r.bandwidth_bytes_per_s
        + r.call_overhead_s
    )


def classical_costs(
    n: int,
    *,
    nnz: int | None = None,
    kappa: float,
    eps: float,
    rank: int | None = None,
    rates: MachineRates,
) -> dict[str, float]:
    """Predicted seconds of every classical solver: keys ``cholesky, lu, inverse, cg`` and
    ``woodbury`` (only when ``rank`` is given). ``nnz`` defaults to N² (dense).

    ``rank`` means the system is held in factor form ``s·FᵀF + λI``, ``F ∈ R^{rank×N}``: the dense
    solvers then first form A, ``2·N²·rank / R_gemm + 16·N² / bandwidth`` more seconds (the
    product, then one scaling pass that reads and writes N² fp64 values), and Woodbury applies.
    """
    n = _check_int("n", n, 1)
    form = 0.0
    if rank is not None:
        r = _check_rates(rates)
        form = (2.0 * n * n * _check_int("rank", rank, 1) / r.gemm_flops_per_s
                + 16.0 * n * n / r.bandwidth_bytes_per_s)
    out = {
        "cholesky": cholesky_seconds(n, rates) + form,
        "lu": lu_seconds(n, rates) + form,
        "inverse": inverse_seconds(n, rates) + form,
        "cg": cg_seconds(n, n * n if nnz is None else nnz, kappa, eps, rates),
    }
    if rank is not None:
        out["woodbury"] = woodbury_seconds(n, rank, rates)
    return out


def best_classical(costs: Mapping[str, float]) -> tuple[str, float]:
    """The cheapest entry ``(name, seconds)`` of a :func:`classical_costs` dict.

    All entries compete, "inverse" included (it never wins against Cholesky under these models,
    so including it is harmless and keeps the choice a plain minimum). Ties go to the first key.
    """
    if not costs:
        raise ValueError("costs must contain at least one solver")
    name = min(costs, key=lambda k: costs[k])
    return name, float(costs[name])


# ---------------------------------------------------------------- calibration (probe + cache)


def default_cache_dir() -> Path:
    """``$QNEWTON_CACHE_DIR`` if set, else ``~/.cache/qnewton``."""
    env = os.environ.get("QNEWTON_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "qnewton"


def _cache_key() -> tuple[str, str, int]:
    import torch

    return platform.node() or "unknown-host", str(torch.__version__), torch.get_num_threads()


def _cache_path(cache_dir: Path, host: str, version: str, threads: int) -> Path:
    # v2: the rates carry call/iteration overheads; older cache files are not re-used.
    raw = f"rates-v2-{host}-torch{version}-t{threads}"
    return cache_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", raw) + ".json")


def _repeat_times(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    return max(statistics.median(_repeat_times(fn, repeats)), 1e-9)


def _probe_dense(n: int, gen: Any) -> tuple[float, float]:
    """Median seconds of an n×n fp64 GEMM and of an n×n Cholesky factor + solve."""
    import torch

    m = torch.randn(n, n, dtype=torch.float64, generator=gen)
    gemm_s = _median_time(lambda: m @ m, 5)
    spd = (m @ m.T) / n + torch.eye(n, dtype=torch.float64)
    rhs = torch.randn(n, 1, dtype=torch.float64, generator=gen)

    def chol_solve() -> torch.Tensor:
        return torch.cholesky_solve(rhs, torch.linalg.cholesky(spd))

    return gemm_s, _median_time(chol_solve, 5)


def _probe_matvec(nb: int, gen: Any) -> float:
    """Median seconds of a fp64 matvec over an nb×nb matrix (the memory traffic of CG)."""
    import torch

    big = torch.randn(nb, nb, dtype=torch.float64, generator=gen)
    v = torch.randn(nb, dtype=torch.float64, generator=gen)
    return _median_time(lambda: big @ v, 7)


def _probe_overheads() -> tuple[float, float]:
    """Seconds of one qnewton solver call on an 8×8 system, and per extra CG iteration."""
    import torch

    from qnewton.conditioning import LinearSystem
    from qnewton.curvature import CurvatureBlock
    from qnewton.solvers import solve_cg, solve_cholesky

    n = 8
    a = torch.diag(torch.linspace(1.0, 100.0, n, dtype=torch.float64))
    system = LinearSystem(CurvatureBlock("probe", "hessian", dense=a), shift=0.0, reg=0.0,
                          dense=a, d=n, nnz=n * n)
    b = torch.ones(n, dtype=torch.float64)
    # The minimum, not the median: on a busy machine a tiny multi-threaded LAPACK call can wait a
    # whole scheduler slice for its second thread, and such outliers must not be cached.
    call = _min_time(lambda: solve_cholesky(system, b), 21)
    iterations = solve_cg(system, b).iterations or 1
    cg = _min_time(lambda: solve_cg(system, b), 11)
    return call, max(0.0, (cg - call) / iterations)


def _min_time(fn: Callable[[], object], repeats: int) -> float:
    return max(min(_repeat_times(fn, repeats)), 1e-9)


def _probe(host: str, version: str, threads: int) -> MachineRates:
    """Measure the dense, GEMM and bandwidth rates and the call overheads (≈0.3–1 s)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    n = 1200
    gemm_s, chol_s = _probe_dense(n, gen)
    nb = 2896
    mv_s = _probe_matvec(nb, gen)
    call_s, iteration_s = _probe_overheads()
    return MachineRates(
        call_overhead_s=call_s,
        iteration_overhead_s=iteration_s,
        dense_flops_per_s=cholesky_flops(n) / chol_s,
        gemm_flops_per_s=2.0 * n**3 / gemm_s,
        bandwidth_bytes_per_s=(8.0 * nb * nb + 16.0 * nb) / mv_s,
        source="calibrated",
        host=host,
        torch_version=version,
        threads=threads,
        measured_at=_now_iso(),
    )


def calibrate(cache_dir: str | Path | None = None, force: bool = False) -> MachineRates:
    """Rates of THIS machine from a short probe, cached as JSON.

    Probe (median of a few repeats after one warm-up, ≈1 s or less): a float64 Cholesky
    factorization + ``cholesky_solve`` at N = 1200 gives ``dense_flops_per_s`` = (N³/3 + 2N²)/t;
    a 1200×1200 GEMM gives ``gemm_flops_per_s`` = 2N³/t; a fp64 matvec over a 2896×2896 matrix
    (64 MiB) gives ``bandwidth_bytes_per_s`` = bytes touched / t; qnewton's own Cholesky and CG
    solvers on an 8×8 system give ``call_overhead_s`` and ``iteration_overhead_s``.

    Cache: one file per (host name, torch version, ``torch.get_num_threads()``) in ``cache_dir``
    (default :func:`default_cache_dir`). A valid matching file is returned with
    ``source="cache"``; ``force=True`` re-measures. A missing, corrupt or mismatching file is
    replaced by a fresh measurement; a cache that cannot be written is ignored (never raises).
    """
    host, version, threads = _cache_key()
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = _cache_path(directory, host, version, threads)
    if not force:
        try:
            cached = MachineRates.from_dict(json.loads(path.read_text(encoding="utf-8")))
            if (cached.host, cached.torch_version, cached.threads) == (host, version, threads):
                return dataclasses.replace(cached, source="cache")
        except (OSError, ValueError, TypeError):  # missing or corrupt: measure again
            pass
    rates = _probe(host, version, threads)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(rates.to_dict(), indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return rates
