"""Calibration of this machine's rates: probe, load judged during the probe, cache file, spot
check against the cache, recovery from a bad cache, provenance. The probe and the load counters
are injected (no timing assertions), except in one test of the real probe's plausibility."""

from __future__ import annotations

import json

import pytest

from qnewton import calibration
from qnewton.calibration import calibrate, default_cache_dir, read_cache, reset_cache
from qnewton.calibration.load import CpuSnapshot, _machine_busy_seconds, probe_load
from qnewton.calibration.probe import ProbeTimes, rates_fields
from qnewton.solvers import MachineRates

#: Probe times of a quiet machine (dense ≈ 26 GFLOP/s, call overhead 60 µs).
QUIET = ProbeTimes(gemm_s=0.055, cholesky_s=0.0222, matvec_s=0.0049, call_s=60e-6, cg_s=300e-6,
                   cg_iterations=8, rounds=3)


class Counters:
    """Fake load counters: each probe spans one second of wall time in which other processes
    keep ``other`` cores busy and this process gets ``own`` CPU seconds."""

    def __init__(self, other: float = 0.1, own: float = 1.0, load: float = 0.3) -> None:
        self.other, self.own, self.load = other, own, load
        self.t = 0.0
        self.cpu = 0.0
        self.busy = 0.0
        self.calls = 0

    def __call__(self) -> CpuSnapshot:
        if self.calls % 2:  # an "after" snapshot: one second has passed
            self.t += 1.0
            self.cpu += self.own
            self.busy += self.own + self.other
        self.calls += 1
        return CpuSnapshot(self.t, self.cpu, self.busy, self.load)


class Probe:
    """Fake probe returning fixed times; records the rounds asked for."""

    def __init__(self, times: ProbeTimes = QUIET) -> None:
        self.times = times
        self.rounds: list[int] = []

    def __call__(self, rounds: int) -> ProbeTimes:
        self.rounds.append(rounds)
        return self.times


@pytest.fixture(autouse=True)
def _two_cores(monkeypatch):
    monkeypatch.setattr(calibration.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(calibration.torch, "get_num_threads", lambda: 1)


def _cache_files(path):
    return sorted(p for p in path.iterdir() if p.suffix == ".json")


def test_a_calibration_under_synthetic_load_is_not_cached(tmp_path):
    # a 2-thread GEMM loop beside the probe on 2 cores: two other cores busy, the 1-minute load
    # average still low (it lags) — the case that was once cached
    counters = Counters(other=1.9, own=0.55, load=0.39)
    with pytest.warns(RuntimeWarning, match="under load"):
        rates = calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=counters)
    assert rates.source == "calibrated"
    assert _cache_files(tmp_path) == []
    prov = rates.provenance
    assert prov.under_load and not prov.cached
    assert prov.other_busy_cores == pytest.approx(1.9)
    assert prov.own_cpu_ratio == pytest.approx(0.55)
    assert "1.90 of 2 cores" in prov.note and "55%" in prov.note


@pytest.mark.parametrize("counters, why", [
    (Counters(other=0.1, own=0.6), "had a core for only 60%"),
    (Counters(other=0.1, own=1.0, load=2.5), "load average before the probe was 2.50"),
])
def test_each_load_signal_alone_stops_caching(tmp_path, counters, why):
    with pytest.warns(RuntimeWarning, match="under load"):
        rates = calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=counters)
    assert _cache_files(tmp_path) == []
    assert why in rates.provenance.note


def test_a_quiet_calibration_is_cached_with_its_provenance(tmp_path):
    probe = Probe()
    rates = calibrate(tmp_path, measure_fn=probe, snapshot_fn=Counters())
    assert probe.rounds == [calibration.ROUNDS]
    expected = rates_fields(QUIET)
    assert rates.dense_flops_per_s == pytest.approx(expected["dense_flops_per_s"])
    assert rates.call_overhead_s == pytest.approx(60e-6)
    (path,) = _cache_files(tmp_path)
    stored = MachineRates.from_dict(json.loads(path.read_text()))
    assert stored == rates
    assert rates.provenance.cached and rates.provenance.cache_path == str(path)
    assert rates.provenance.rounds == calibration.ROUNDS
    assert rates.provenance.load_average_before == pytest.approx(0.3)


def test_a_cached_rate_within_the_factor_is_confirmed_by_one_spot_round(tmp_path):
    calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=Counters())
    (path,) = _cache_files(tmp_path)
    before = path.read_text()
    calibration._CONFIRMED.clear()  # a new process
    slower = ProbeTimes(**{**QUIET.__dict__, "cholesky_s": QUIET.cholesky_s * 2.5})
    probe = Probe(slower)
    again = calibrate(tmp_path, measure_fn=probe, snapshot_fn=Counters())
    assert probe.rounds == [calibration.SPOT_ROUNDS]
    assert again.source == "cache"
    assert again.dense_flops_per_s == pytest.approx(rates_fields(QUIET)["dense_flops_per_s"])
    assert "agreed within 3×" in again.provenance.note
    assert path.read_text() == before
    # in the same process the confirmed file is not probed again until it changes
    probe.rounds.clear()
    assert calibrate(tmp_path, measure_fn=probe, snapshot_fn=Counters()) == again
    assert probe.rounds == []


def _write_off_cache(tmp_path, **changes):
    good = calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=Counters())
    (path,) = _cache_files(tmp_path)
    path.write_text(json.dumps(dict(good.to_dict(), **changes)))
    calibration._CONFIRMED.clear()
    return good, path


def test_a_cached_rate_ten_times_off_is_re_measured_and_replaced(tmp_path):
    good, path = _write_off_cache(tmp_path, dense_flops_per_s=good_dense() / 10)
    probe = Probe()
    rates = calibrate(tmp_path, measure_fn=probe, snapshot_fn=Counters())
    assert probe.rounds == [calibration.SPOT_ROUNDS, calibration.ROUNDS]
    assert rates.source == "calibrated"
    assert rates.dense_flops_per_s == pytest.approx(good.dense_flops_per_s)
    assert "dense_flops_per_s 10.0× off" in rates.provenance.note
    stored = MachineRates.from_dict(json.loads(path.read_text()))
    assert stored.dense_flops_per_s == pytest.approx(good.dense_flops_per_s)


def good_dense() -> float:
    return rates_fields(QUIET)["dense_flops_per_s"]


def test_a_bad_cache_re_measured_under_load_keeps_the_faster_rate_per_field(tmp_path):
    # the cache: a 100× call overhead and a 3.5× low dense rate, found while busy
    good, path = _write_off_cache(tmp_path, call_overhead_s=100 * 60e-6,
                                  dense_flops_per_s=good_dense() / 3.5)
    stale = path.read_text()
    loaded = ProbeTimes(**{**QUIET.__dict__, "gemm_s": QUIET.gemm_s * 2})  # load slows GEMM
    with pytest.warns(RuntimeWarning, match="under load"):
        rates = calibrate(tmp_path, measure_fn=Probe(loaded), snapshot_fn=Counters(other=2.0))
    assert rates.call_overhead_s == pytest.approx(60e-6)            # the probe's, not the cache's
    assert rates.dense_flops_per_s == pytest.approx(good.dense_flops_per_s)
    assert rates.gemm_flops_per_s == pytest.approx(good.gemm_flops_per_s)  # the cache's
    assert "call_overhead_s 100.0× off" in rates.provenance.note
    assert path.read_text() == stale  # nothing measured under load is cached


def test_force_re_measures_and_reset_deletes(tmp_path):
    calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=Counters())
    probe = Probe()
    forced = calibrate(tmp_path, force=True, measure_fn=probe, snapshot_fn=Counters())
    assert probe.rounds == [calibration.ROUNDS] and forced.source == "calibrated"
    assert "forced" in forced.provenance.note
    (path,) = _cache_files(tmp_path)
    assert reset_cache(tmp_path) == path
    assert _cache_files(tmp_path) == [] and read_cache(tmp_path) is None
    assert reset_cache(tmp_path) is None


def test_the_real_probe_gives_plausible_rates_and_a_reread_cache(tmp_path):
    import torch

    first = calibrate(tmp_path, snapshot_fn=Counters())
    assert first.source == "calibrated"
    assert first.threads == torch.get_num_threads()
    assert first.torch_version == str(torch.__version__)
    for rate in (first.dense_flops_per_s, first.gemm_flops_per_s, first.bandwidth_bytes_per_s):
        assert 1e6 < rate < 1e15
    assert 0.0 < first.call_overhead_s < 1.0
    second = calibrate(tmp_path, snapshot_fn=Counters())
    assert second.source == "cache"
    assert second.dense_flops_per_s == first.dense_flops_per_s
    assert second.measured_at == first.measured_at


def test_calibrate_recovers_from_corrupt_cache(tmp_path):
    calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=Counters())
    (path,) = _cache_files(tmp_path)
    for garbage in ("{not json", json.dumps([1, 2]), json.dumps({"dense_flops_per_s": -1}),
                    json.dumps({**json.loads(path.read_text()), "provenance": {"bogus": 1}})):
        path.write_text(garbage)
        rates = calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=Counters())
        assert rates.source == "calibrated"
        assert MachineRates.from_dict(json.loads(path.read_text())) == rates


def test_calibrate_ignores_mismatching_cache_entry(tmp_path):
    first = calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=Counters())
    (path,) = _cache_files(tmp_path)
    stale = dict(first.to_dict(), threads=first.threads + 7, dense_flops_per_s=1.0)
    path.write_text(json.dumps(stale))
    again = calibrate(tmp_path, measure_fn=Probe(), snapshot_fn=Counters())
    assert again.source == "calibrated" and again.dense_flops_per_s != 1.0


def test_an_older_rates_file_without_provenance_still_reads():
    old = {"dense_flops_per_s": 1e10, "gemm_flops_per_s": 2e10, "bandwidth_bytes_per_s": 1e10,
           "source": "calibrated", "host": "h", "torch_version": "2", "threads": 1,
           "measured_at": "", "call_overhead_s": 1e-4, "iteration_overhead_s": 0.0}
    assert MachineRates.from_dict(old).provenance is None


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("QNEWTON_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("QNEWTON_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "qnewton")


def test_calibrate_unwritable_cache_does_not_crash(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rates = calibrate(blocker / "sub", measure_fn=Probe(), snapshot_fn=Counters())
    assert rates.source == "calibrated" and not rates.provenance.cached


def test_machine_busy_seconds_reads_proc_stat():
    text = "cpu  100 5 50 1000 20 3 2 10 7 0\ncpu0 50 2 25 500 10 1 1 5 3 0\nintr 1\n"
    hz = calibration.load.os.sysconf("SC_CLK_TCK")
    # user+nice+system+irq+softirq+steal = 100+5+50+3+2+10; idle and iowait left out; guest
    # time is already inside user
    assert _machine_busy_seconds(text) == pytest.approx(170 / hz)
    assert _machine_busy_seconds("intr 1\n") is None


def test_probe_load_leaves_the_probe_its_own_cores():
    before = CpuSnapshot(0.0, 0.0, 0.0, 0.2)
    # one other process busy on a 2-core machine while a 1-thread probe runs: a core was free
    one_other = probe_load(before, CpuSnapshot(1.0, 1.0, 2.0, 0.2), cpus=2, threads=1)
    assert one_other.other_busy_cores == pytest.approx(1.0) and not one_other.under_load
    # the same load with a 2-thread probe leaves it no spare core
    two_threads = probe_load(before, CpuSnapshot(1.0, 1.0, 2.0, 0.2), cpus=2, threads=2)
    assert two_threads.under_load
    no_proc = probe_load(CpuSnapshot(0.0, 0.0, None, None), CpuSnapshot(1.0, 1.0, None, None),
                         cpus=2, threads=1)
    assert no_proc.other_busy_cores is None and not no_proc.under_load
