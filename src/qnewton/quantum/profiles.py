"""Hardware profiles: the assumptions that turn QLSA queries into modeled seconds (docs/method.md
§4.4).

No quantum computer is ever run: every time computed from a profile is the output of a cost model
on that named profile, never a measurement. :data:`HARDWARE_PROFILES` holds the presets; adding
one is one entry in the tuple below. :func:`get_profile` and :func:`profile_from_dict` derive
user-defined profiles from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qnewton.quantum.readout import READOUT_MODES
from qnewton.registry import Registry
from qnewton.validation import (
    check_choice,
    check_int,
    check_open_unit,
    check_positive,
    check_real,
)

#: One attosecond in seconds: the paper's hypothetical per-gate time ("attosecond physics",
#: arXiv 2405.00252).
ATTOSECOND = 1e-18

#: Surface-code threshold p_th: the physical error rate below which the logical error rate
#: 0.03·(p/p_th)^((d+1)/2) falls with the distance d (``errorCorrectionThreshold`` = 0.01 of the
#: Azure Resource Estimator's gate-based surface code; Beverland et al., arXiv 2211.07629). A
#: fault-tolerant profile must run below it; :mod:`qnewton.quantum.fault_tolerant` uses it too.
SURFACE_CODE_THRESHOLD = 0.01

#: The profile a run uses when none is named: a realistic fault-tolerant machine that charges the
#: block encoding, |b⟩ preparation, data loading and the vector readout a Newton step needs
#: (docs/method.md §4.4, "The default comparison"). The ``paper`` profile is the paper's
#: hypothesis, kept for reproduction and labelled as such wherever it is used.
DEFAULT_HARDWARE = "surface-code"

#: ``"gate-count"``: ⌈log₂N⌉ gates per query, no error correction (the paper's model);
#: ``"fault-tolerant"``: surface code with QROAM data access
#: (:mod:`~qnewton.quantum.fault_tolerant`); ``"qdk-estimator"``: the same logical counts sent to
#: Microsoft's ``qdk`` resource estimator (:mod:`~qnewton.quantum.qdk_estimator`, optional extra
#: ``qnewton[quantum]``).
PROFILE_KINDS = ("gate-count", "fault-tolerant", "qdk-estimator")
#: The ``qdk`` estimator's gate-based qubit presets a ``"qdk-estimator"`` profile may start from
#: (arXiv 2211.07629, Table I): ``ns`` 50 ns gates and 100 ns measurement, ``us`` 100 µs; ``e3``
#: / ``e4`` Clifford error rates 1e-3 / 1e-4 (``qubit_gate_us_e3`` assumes T gates of error 1e-6).
QDK_QUBIT_PRESETS = ("qubit_gate_ns_e3", "qubit_gate_ns_e4", "qubit_gate_us_e3", "qubit_gate_us_e4")


def check_physical_error_rate(value: Any) -> float:
    """A physical error rate p with 0 < p < :data:`SURFACE_CODE_THRESHOLD`."""
    return check_real("physical_error_rate", value, low=0.0, high=SURFACE_CODE_THRESHOLD,
                      low_open=True, high_open=True)


def index_bits(n: int) -> int:
    """⌈log₂ n⌉: bits that index n ≥ 1 items (0 for n = 1), exact for large n."""
    return (int(n) - 1).bit_length()


@dataclass(frozen=True)
class HardwareProfile:
    """Assumptions that turn QLSA queries into **modeled** seconds.

    Attributes:
        name: profile name (registry key for presets).
        kind: one of :data:`PROFILE_KINDS`.
        description: one line on what the profile assumes.
        gate_time_s: seconds per gate, gate-count profiles only (``None`` otherwise).
        t_2q_s: physical two-qubit gate time in seconds (fault-tolerant only).
        t_meas_s: physical measurement time in seconds (fault-tolerant only).
        physical_error_rate: physical error rate p, 0 < p < 0.01 (fault-tolerant and qdk).
        error_budget: allowed failure probability of one QLSA run (fault-tolerant and qdk),
            shared by logical errors and magic-state distillation.
        qdk_qubit_params: the ``qdk`` qubit preset of a ``"qdk-estimator"`` profile, one of
            :data:`QDK_QUBIT_PRESETS`; its gate time, measurement time and Clifford error rates
            are replaced by this profile's ``t_2q_s``, ``t_meas_s`` and ``physical_error_rate``.
        bits_per_entry: data bits per stored matrix/vector entry (w_data).
        loading_bandwidth_bytes_per_s: classical bandwidth for loading A and b into the machine.
        charge_loading: whether the data-loading time is charged.
        default_readout: one of :data:`~qnewton.quantum.readout.READOUT_MODES`.
        readout_error: ℓ₂ tomography error δ used by ``"vector"`` readout (0 < δ < 1) when the
            scheduler does not match accuracies (``SchedulerConfig.match_accuracy``).
        hypothesis: empty for a device model; otherwise the hypothesis the profile stands for,
            printed with every output that uses it (:meth:`label`).

    Numeric fields are validated and stored as ``float``/``int``; fields a kind does not use are
    left as given.
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
    qdk_qubit_params: str | None = None
    hypothesis: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        check_choice("kind", self.kind, PROFILE_KINDS)
        checked: dict[str, float | int] = {}
        if self.kind == "gate-count":
            checked["gate_time_s"] = check_positive("gate_time_s", self.gate_time_s)
        elif self.gate_time_s is not None:
            raise ValueError(
                f"gate_time_s applies to gate-count profiles only (e.g. 'paper', the paper's "
                f"hypothesis); profile {self.name!r} is {self.kind}, got {self.gate_time_s!r}")
        else:
            checked["t_2q_s"] = check_positive("t_2q_s", self.t_2q_s)
            checked["t_meas_s"] = check_positive("t_meas_s", self.t_meas_s)
            checked["physical_error_rate"] = check_physical_error_rate(self.physical_error_rate)
        if self.kind == "qdk-estimator":
            check_choice("qdk_qubit_params", self.qdk_qubit_params, QDK_QUBIT_PRESETS)
        checked["error_budget"] = check_open_unit("error_budget", self.error_budget)
        checked["bits_per_entry"] = check_int("bits_per_entry", self.bits_per_entry, minimum=1)
        checked["loading_bandwidth_bytes_per_s"] = check_positive(
            "loading_bandwidth_bytes_per_s", self.loading_bandwidth_bytes_per_s)
        if not isinstance(self.hypothesis, str):
            raise ValueError(f"hypothesis must be a string, got {self.hypothesis!r}")
        if not isinstance(self.charge_loading, bool):
            raise ValueError(f"charge_loading must be True or False, got {self.charge_loading!r}")
        check_choice("default_readout", self.default_readout, READOUT_MODES)
        checked["readout_error"] = check_open_unit("readout_error", self.readout_error)
        for field_name, value in checked.items():
            object.__setattr__(self, field_name, value)

    def label(self) -> str:
        """The name, with the hypothesis it stands for when it is not a device model."""
        return f"{self.name} ({self.hypothesis})" if self.hypothesis else self.name

    def entry_bits(self, n: int) -> int:
        """w = bits_per_entry + ⌈log₂N⌉: value bits plus column-index bits of one stored entry."""
        return self.bits_per_entry + index_bits(n)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serializable dict (inverse of :func:`profile_from_dict`)."""
        return dataclasses.asdict(self)


PROFILE_FIELDS = tuple(f.name for f in dataclasses.fields(HardwareProfile))

#: The preset profiles by name; unknown names raise :class:`~qnewton.registry.UnknownNameError`.
#: The fault-tolerant presets use the Azure Resource Estimator's gate-based qubit models
#: (Beverland et al., arXiv 2211.07629): ``qubit_gate_ns_e3`` / ``_e4`` (50 ns gates, 100 ns
#: measurement, p = 1e-3 / 1e-4) and ``qubit_gate_us_e3`` (100 µs gates and measurement, 1e-3).
HARDWARE_PROFILES: Registry[HardwareProfile] = Registry("hardware")
for _preset in (
    HardwareProfile(
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
        hypothesis=(
            "THE PAPER'S HYPOTHESIS, not a device model: free block encoding, |b⟩ preparation, "
            "data loading and readout, while the Newton step still receives the full vector"
        ),
    ),
    HardwareProfile(
        name="surface-code",
        kind="fault-tolerant",
        description=(
            "Surface-code superconducting qubits, realistic: t_2q 50 ns, t_meas 100 ns, "
            "p 1e-3 (≈37 µs per Toffoli); QROAM data access, 15-to-1 factories, loading and "
            "vector readout charged."
        ),
        t_2q_s=50e-9,
        t_meas_s=100e-9,
        physical_error_rate=1e-3,
        charge_loading=True,
        default_readout="vector",
    ),
    HardwareProfile(
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
    HardwareProfile(
        name="trapped-ion",
        kind="fault-tolerant",
        description=(
            "Surface-code trapped ions: t_2q 100 µs, t_meas 100 µs, p 1e-3 (logical cycle "
            "600 µs·d; ≈56 ms per Toffoli at d≈31); loading and vector readout charged."
        ),
        t_2q_s=100e-6,
        t_meas_s=100e-6,
        physical_error_rate=1e-3,
        charge_loading=True,
        default_readout="vector",
    ),
    HardwareProfile(
        name="qdk-surface-code",
        kind="qdk-estimator",
        description=(
            "The surface-code profile's logical counts sent to the qdk resource estimator "
            "(preset qubit_gate_ns_e3: 50 ns gates, 100 ns measurement, p 1e-3)."
        ),
        t_2q_s=50e-9,
        t_meas_s=100e-9,
        physical_error_rate=1e-3,
        charge_loading=True,
        default_readout="vector",
        qdk_qubit_params="qubit_gate_ns_e3",
    ),
    HardwareProfile(
        name="qdk-surface-code-optimistic",
        kind="qdk-estimator",
        description=(
            "The surface-code-optimistic profile's logical counts sent to the qdk resource "
            "estimator (preset qubit_gate_ns_e4: 50 ns gates, 100 ns measurement, p 1e-4)."
        ),
        t_2q_s=50e-9,
        t_meas_s=100e-9,
        physical_error_rate=1e-4,
        charge_loading=True,
        default_readout="vector",
        qdk_qubit_params="qubit_gate_ns_e4",
    ),
    HardwareProfile(
        name="qdk-trapped-ion",
        kind="qdk-estimator",
        description=(
            "The trapped-ion profile's logical counts sent to the qdk resource estimator "
            "(preset qubit_gate_us_e3: 100 µs gates and measurement, p 1e-3; its T gates have "
            "error 1e-6, so its factories are smaller than ours)."
        ),
        t_2q_s=100e-6,
        t_meas_s=100e-6,
        physical_error_rate=1e-3,
        charge_loading=True,
        default_readout="vector",
        qdk_qubit_params="qubit_gate_us_e3",
    ),
):
    HARDWARE_PROFILES.register(_preset.name, _preset)
del _preset


def _check_fields(values: Mapping[str, Any], allowed_prefix: str = "") -> None:
    """ValueError naming the keys of ``values`` that are not HardwareProfile fields."""
    unknown = sorted(set(values) - set(PROFILE_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown HardwareProfile field(s) {', '.join(unknown)}; "
            f"allowed fields: {allowed_prefix}{', '.join(PROFILE_FIELDS)}"
        )


def get_profile(name: str, **overrides: Any) -> HardwareProfile:
    """A preset from :data:`HARDWARE_PROFILES`, with fields replaced by ``overrides``.

    Example: ``get_profile("paper", gate_time_s=ATTOSECOND)``. Overridden values are validated
    like the presets; unknown names or fields raise ValueError listing the allowed ones.
    """
    base = HARDWARE_PROFILES[name]
    _check_fields(overrides)
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
    preset = None if base is None else HARDWARE_PROFILES[base]
    _check_fields(values, allowed_prefix="base, ")
    if preset is not None:
        return dataclasses.replace(preset, **values)
    missing = [k for k in ("name", "kind") if k not in values]
    if missing:
        raise ValueError(
            f"profile definition needs {' and '.join(missing)} (or a 'base' preset: "
            f"{', '.join(HARDWARE_PROFILES)})"
        )
    return HardwareProfile(**values)
