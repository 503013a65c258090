"""Hardware profiles (qnewton.quantum.profiles): presets, overrides, user-defined profiles."""

from __future__ import annotations

import json

import pytest

from qnewton.quantum import (
    ATTOSECOND,
    HARDWARE_PROFILES,
    HardwareProfile,
    get_profile,
    profile_from_dict,
    quantum_cost,
)
from qnewton.registry import UnknownNameError


def test_fault_tolerant_presets_are_the_azure_resource_estimator_qubit_models():
    # Azure Resource Estimator predefined gate-based qubits (Beverland et al., arXiv 2211.07629;
    # learn.microsoft.com "Customize the target parameters of the Resource Estimator"):
    # qubit_gate_ns_e3 / qubit_gate_ns_e4: 50 ns two-qubit gates, 100 ns measurement, error rate
    # 1e-3 (realistic) / 1e-4 (optimistic); qubit_gate_us_e3: 100 µs gates and measurement, 1e-3.
    expected = {
        "surface-code": (50e-9, 100e-9, 1e-3),
        "surface-code-optimistic": (50e-9, 100e-9, 1e-4),
        "trapped-ion": (100e-6, 100e-6, 1e-3),
    }
    for name, (t_2q, t_meas, p) in expected.items():
        prof = HARDWARE_PROFILES[name]
        assert prof.kind == "fault-tolerant"
        assert (prof.t_2q_s, prof.t_meas_s, prof.physical_error_rate) == (t_2q, t_meas, p)
        # the estimator's default error budget
        assert prof.error_budget == 1e-3
        assert prof.default_readout == "vector" and prof.charge_loading


def test_paper_preset_is_gate_counting_without_overheads():
    # arXiv 2405.00252 charges gates only: no error correction, no data loading, free readout
    paper = HARDWARE_PROFILES["paper"]
    assert paper.kind == "gate-count"
    assert paper.gate_time_s == 1e-9
    assert paper.default_readout == "state" and not paper.charge_loading
    assert paper.t_2q_s is None and paper.physical_error_rate is None


def test_registry_order_and_names():
    assert HARDWARE_PROFILES.names() == ("paper", "surface-code", "surface-code-optimistic",
                                         "trapped-ion", "qdk-surface-code",
                                         "qdk-surface-code-optimistic", "qdk-trapped-ion")
    for name, prof in HARDWARE_PROFILES.items():
        assert prof.name == name and prof.description


def test_attosecond_override():
    assert ATTOSECOND == 1e-18
    fast = get_profile("paper", gate_time_s=ATTOSECOND)
    assert fast.gate_time_s == 1e-18
    assert HARDWARE_PROFILES["paper"].gate_time_s == 1e-9  # preset untouched
    slow = quantum_cost(4096, 10, 100.0, 1e-2, profile=get_profile("paper"))
    quick = quantum_cost(4096, 10, 100.0, 1e-2, profile=fast)
    assert quick.total_seconds == pytest.approx(slow.total_seconds * 1e-9, rel=1e-12)
    assert quick.seconds_per_query == 12 * 1e-18  # ⌈log₂ 4096⌉ = 12 gates per query


def test_get_profile_without_overrides_returns_the_preset():
    assert get_profile("surface-code") is HARDWARE_PROFILES["surface-code"]


def test_unknown_profile_lists_registered_names():
    with pytest.raises(UnknownNameError) as info:
        get_profile("quantum-annealer")
    assert str(info.value) == ("hardware must be one of paper, surface-code, "
                               "surface-code-optimistic, trapped-ion, qdk-surface-code, "
                               "qdk-surface-code-optimistic, qdk-trapped-ion; "
                               "got 'quantum-annealer'")


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("paper", {"gate_speed": 1e-18}, "gate_speed.*allowed fields.*gate_time_s"),
        ("paper", {"gate_time_s": 0.0}, "^gate_time_s must be"),
        ("surface-code", {"physical_error_rate": 0.02}, "^physical_error_rate must be .*< 0.01"),
        ("surface-code", {"physical_error_rate": 0.0}, "^physical_error_rate must be"),
        ("surface-code", {"t_2q_s": None}, "^t_2q_s must be"),
        ("surface-code", {"default_readout": "magic"}, "^default_readout must be one of"),
        ("surface-code", {"readout_error": 1.5}, "^readout_error must be"),
        ("surface-code", {"error_budget": 1.0}, "^error_budget must be"),
        ("surface-code", {"bits_per_entry": 0}, "^bits_per_entry must be"),
        ("surface-code", {"bits_per_entry": 8.5}, "^bits_per_entry must be"),
        ("surface-code", {"loading_bandwidth_bytes_per_s": -1.0}, "^loading_bandwidth"),
        ("surface-code", {"charge_loading": "yes"}, "^charge_loading must be"),
        ("surface-code", {"kind": "analog"}, "^kind must be one of"),
    ],
)
def test_get_profile_validates_overrides(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_profile(name, **overrides)


def test_numeric_fields_are_stored_as_numbers_and_text_is_refused():
    prof = HardwareProfile(name="x", kind="fault-tolerant", t_2q_s=1, t_meas_s=2e-7,
                           physical_error_rate=1e-3)
    assert prof.t_2q_s == 1.0 and isinstance(prof.t_2q_s, float)
    assert prof.gate_time_s is None  # not used by this kind, left as given
    with pytest.raises(ValueError, match="t_meas_s must be a finite number > 0, got '2e-7'"):
        HardwareProfile(name="x", kind="fault-tolerant", t_2q_s=1, t_meas_s="2e-7",
                        physical_error_rate=1e-3)


def test_profile_from_dict():
    custom = profile_from_dict(
        {"base": "surface-code", "name": "my-sc", "physical_error_rate": 5e-4}
    )
    assert custom.name == "my-sc" and custom.physical_error_rate == 5e-4
    assert custom.t_2q_s == 50e-9
    full = profile_from_dict(
        {"name": "fast", "kind": "gate-count", "gate_time_s": 1e-12, "readout_error": 0.05}
    )
    assert full == HardwareProfile(
        name="fast", kind="gate-count", gate_time_s=1e-12, readout_error=0.05
    )
    assert profile_from_dict(json.loads(json.dumps(custom.to_dict()))) == custom
    with pytest.raises(ValueError, match="needs kind"):
        profile_from_dict({"name": "x"})
    with pytest.raises(ValueError, match="colour.*allowed fields: base, name"):
        profile_from_dict({"name": "x", "kind": "gate-count", "colour": "red"})
    with pytest.raises(ValueError, match="colour"):
        profile_from_dict({"base": "paper", "colour": "red"})
    with pytest.raises(UnknownNameError, match="hardware must be one of"):
        profile_from_dict({"base": "nope"})
    with pytest.raises(ValueError, match="t_2q_s"):
        profile_from_dict({"name": "ft", "kind": "fault-tolerant"})
    with pytest.raises(ValueError, match="^name must be"):
        profile_from_dict({"base": "paper", "name": ""})
    with pytest.raises(ValueError, match="mapping"):
        profile_from_dict([("name", "x")])


def test_qdk_profiles_carry_their_twin_s_assumptions_and_a_preset():
    # each qdk-* profile sends the same logical counts as its twin, on the matching qdk preset
    presets = {"surface-code": "qubit_gate_ns_e3", "surface-code-optimistic": "qubit_gate_ns_e4",
               "trapped-ion": "qubit_gate_us_e3"}
    fields = ("t_2q_s", "t_meas_s", "physical_error_rate", "error_budget", "bits_per_entry",
              "charge_loading", "default_readout")
    for twin, preset in presets.items():
        ours, theirs = HARDWARE_PROFILES[twin], HARDWARE_PROFILES[f"qdk-{twin}"]
        assert theirs.kind == "qdk-estimator" and theirs.qdk_qubit_params == preset
        assert all(getattr(ours, f) == getattr(theirs, f) for f in fields)


def test_qdk_profile_needs_a_known_preset():
    with pytest.raises(ValueError, match="^qdk_qubit_params must be one of .*qubit_gate_ns_e3"):
        get_profile("qdk-surface-code", qdk_qubit_params="qubit_gate_xx")


def test_gate_time_is_refused_on_profiles_without_one():
    # the default profile is fault-tolerant: a gate time there would be silently ignored
    from qnewton.quantum import DEFAULT_HARDWARE

    assert DEFAULT_HARDWARE == "surface-code"
    with pytest.raises(ValueError, match="gate_time_s applies to gate-count profiles only"):
        get_profile(DEFAULT_HARDWARE, gate_time_s=1e-18)
    assert get_profile("paper", gate_time_s=1e-18).gate_time_s == 1e-18


def test_only_the_paper_profile_is_labelled_a_hypothesis():
    from qnewton.quantum import HARDWARE_PROFILES

    labelled = [name for name, p in HARDWARE_PROFILES.items() if p.hypothesis]
    assert labelled == ["paper"]
    assert HARDWARE_PROFILES["paper"].label().startswith("paper (THE PAPER'S HYPOTHESIS")
    assert HARDWARE_PROFILES["surface-code"].label() == "surface-code"
