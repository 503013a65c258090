"""Calibration of this machine's rates: probe, cache file, recovery from a bad cache."""

from __future__ import annotations

import json

import pytest

from qnewton import calibration
from qnewton.calibration import calibrate, default_cache_dir
from qnewton.solvers import MachineRates


@pytest.fixture(autouse=True)
def _quiet_machine(monkeypatch):
    """The cache tests must not depend on the load of the machine running them."""
    monkeypatch.setattr(calibration, "machine_busy", lambda: False)


def test_rates_measured_on_a_busy_machine_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "machine_busy", lambda: True)
    with pytest.warns(RuntimeWarning, match="busy"):
        rates = calibrate(tmp_path)
    assert rates.source == "calibrated"
    assert _cache_files(tmp_path) == []


def _cache_files(path):
    return sorted(p for p in path.iterdir() if p.suffix == ".json")


def test_calibrate_writes_and_rereads_cache(tmp_path):
    import torch

    first = calibrate(tmp_path)
    assert first.source == "calibrated"
    assert first.threads == torch.get_num_threads()
    assert first.torch_version == str(torch.__version__)
    for rate in (first.dense_flops_per_s, first.gemm_flops_per_s, first.bandwidth_bytes_per_s):
        assert 1e6 < rate < 1e15
    files = _cache_files(tmp_path)
    assert len(files) == 1
    assert json.loads(files[0].read_text())["dense_flops_per_s"] == first.dense_flops_per_s

    second = calibrate(tmp_path)
    assert second.source == "cache"
    assert second.dense_flops_per_s == first.dense_flops_per_s
    assert second.measured_at == first.measured_at

    forced = calibrate(tmp_path, force=True)
    assert forced.source == "calibrated"


def test_calibrate_recovers_from_corrupt_cache(tmp_path):
    calibrate(tmp_path)
    (path,) = _cache_files(tmp_path)
    for garbage in ("{not json", json.dumps([1, 2]), json.dumps({"dense_flops_per_s": -1})):
        path.write_text(garbage)
        rates = calibrate(tmp_path)
        assert rates.source == "calibrated"
        assert MachineRates.from_dict(json.loads(path.read_text())) == rates


def test_calibrate_ignores_mismatching_cache_entry(tmp_path):
    first = calibrate(tmp_path)
    (path,) = _cache_files(tmp_path)
    stale = dict(first.to_dict(), threads=first.threads + 7, dense_flops_per_s=1.0)
    path.write_text(json.dumps(stale))
    again = calibrate(tmp_path)
    assert again.source == "calibrated" and again.dense_flops_per_s != 1.0


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("QNEWTON_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("QNEWTON_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "qnewton")


def test_calibrate_unwritable_cache_does_not_crash(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rates = calibrate(blocker / "sub")  # cannot create a directory under a file
    assert rates.source == "calibrated"
