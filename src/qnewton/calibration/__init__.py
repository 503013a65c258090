"""Calibration: this machine's rates for the classical time models, measured, checked, cached.

Classical predictions are only as good as their rates, so they are measured on the running
machine (docs/method.md §4.5), never hard-coded (:mod:`qnewton.calibration.probe`). A bad
calibration would decide every later run's routing, so it must not be cached silently:

* a probe taken under load (:mod:`qnewton.calibration.load`, judged from counters read around
  the probe itself, not the lagging load average alone) is used by its run but never cached;
* a cached file is confirmed by a one-round spot check on every read; when any rate disagrees by
  more than :data:`DISAGREEMENT_FACTOR` the rates are measured again, and the fresh ones replace
  the cache when they were taken on a quiet machine;
* every calibration carries its provenance (:class:`~qnewton.solvers.rates.RatesProvenance`),
  which runs write to ``config.json`` / ``summary.json`` and the report shows;
* ``qnewton calibrate [--show | --reset]`` measures, shows or deletes the cache.

The cache is one file per (host, torch version, threads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from qnewton.calibration.load import CpuSnapshot, ProbeLoad, probe_load, snapshot
from qnewton.calibration.probe import ProbeTimes, measure, rates_fields
from qnewton.solvers.rates import MachineRates, RatesProvenance, now_iso

#: Rounds of a full calibration (each rate is its fastest round's).
ROUNDS = 3
#: Rounds of the spot check that confirms a cached file.
SPOT_ROUNDS = 1
#: A cached rate further than this factor from the spot check (either way) is re-measured. The
#: run-to-run spread of a quiet probe is well under 2× here; the bad cache seen in issue 22 was
#: 3.5× (dense rate) and ~100× (call overhead) off.
DISAGREEMENT_FACTOR = 3.0
#: The rates compared by the spot check (the per-iteration overhead is a difference of two
#: tiny times, often 0, and has no stable ratio).
CHECKED_RATES = ("dense_flops_per_s", "gemm_flops_per_s", "bandwidth_bytes_per_s",
                 "call_overhead_s")

#: Cache files this process has already confirmed or written: path → (mtime_ns, rates). A file
#: is spot-checked once per process and again whenever it changes (a run calibrates once; tests
#: and experiments that build many optimizers do not re-probe for each).
_CONFIRMED: dict[str, tuple[int, MachineRates]] = {}

#: The rates that are times (smaller is faster); the others are throughputs.
SECONDS_FIELDS = ("call_overhead_s", "iteration_overhead_s")

Measure = Callable[[int], ProbeTimes]
Snapshot = Callable[[], CpuSnapshot]


def default_cache_dir() -> Path:
    """``$QNEWTON_CACHE_DIR`` if set, else ``~/.cache/qnewton``."""
    env = os.environ.get("QNEWTON_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "qnewton"


def _cache_key() -> tuple[str, str, int]:
    return platform.node() or "unknown-host", str(torch.__version__), torch.get_num_threads()


def cache_path(cache_dir: str | Path | None = None) -> Path:
    """This process's cache file (host, torch version, ``torch.get_num_threads()``)."""
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
    host, version, threads = _cache_key()
    # v2: the rates carry call/iteration overheads; older cache files are not re-used.
    raw = f"rates-v2-{host}-torch{version}-t{threads}"
    return directory / (re.sub(r"[^A-Za-z0-9._-]", "_", raw) + ".json")


def read_cache(cache_dir: str | Path | None = None) -> MachineRates | None:
    """The cached rates of this (host, torch version, threads), or ``None`` when the file is
    missing, corrupt or belongs to another key."""
    host, version, threads = _cache_key()
    try:
        cached = MachineRates.from_dict(json.loads(cache_path(cache_dir).read_text("utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if (cached.host, cached.torch_version, cached.threads) != (host, version, threads):
        return None
    return cached


def reset_cache(cache_dir: str | Path | None = None) -> Path | None:
    """Delete this key's cache file; returns its path if there was one."""
    path = cache_path(cache_dir)
    _CONFIRMED.pop(str(path), None)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path


def _write_cache(path: Path, rates: MachineRates) -> bool:
    """Write ``rates`` atomically; ``False`` (no exception) when the cache cannot be written."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(rates.to_dict(), indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return False
    return True


def _probe(rounds: int, measure_fn: Measure, snapshot_fn: Snapshot
           ) -> tuple[dict[str, float], ProbeLoad]:
    threads = torch.get_num_threads()
    before = snapshot_fn()
    times = measure_fn(rounds)
    after = snapshot_fn()
    return rates_fields(times), probe_load(before, after, os.cpu_count() or 1, threads)


def disagreements(cached: MachineRates, fresh: dict[str, float]) -> list[tuple[str, float]]:
    """``(rate, factor)`` for each of :data:`CHECKED_RATES` where the cached value and the fresh
    one differ by more than :data:`DISAGREEMENT_FACTOR` (factor = larger / smaller)."""
    off = []
    for name in CHECKED_RATES:
        old, new = float(getattr(cached, name)), float(fresh[name])
        if old <= 0.0 or new <= 0.0:
            continue
        factor = max(old / new, new / old)
        if factor > DISAGREEMENT_FACTOR:
            off.append((name, factor))
    return off


def _fastest(cached: MachineRates, fresh: dict[str, float]) -> dict[str, float]:
    """Per rate, the faster of two measurements (interference only slows a probe down)."""
    out = {}
    for name, value in fresh.items():
        old = float(getattr(cached, name))
        out[name] = min(old, value) if name in SECONDS_FIELDS else max(old, value)
    return out


def calibrate(cache_dir: str | Path | None = None, force: bool = False, *,
              measure_fn: Measure | None = None,
              snapshot_fn: Snapshot | None = None) -> MachineRates:
    """Rates of THIS machine, cached as JSON, with their provenance.

    * Cached file present (and not ``force``): a one-round spot check (≈0.3 s). If every rate
      of :data:`CHECKED_RATES` is within :data:`DISAGREEMENT_FACTOR` of it, the cached rates are
      returned (``source="cache"``); otherwise they are re-measured below, and the provenance
      names the rate and the factor.
    * Measurement: :data:`ROUNDS` interleaved rounds, fastest per rate, load judged from
      counters read around the probe (:func:`qnewton.calibration.load.probe_load`). Quiet: the
      rates are cached (replacing any file). Under load: a warning, nothing is cached, and the
      run uses the fresh rates — or, when a cache exists, per rate the faster of the two (load
      only ever slows a probe down, so the faster one is nearer the quiet machine).

    A missing, corrupt or mismatching cache file is replaced by a fresh measurement; a cache
    that cannot be written is ignored (never raises). ``measure_fn`` / ``snapshot_fn`` replace
    the probe and the load counters (tests).
    """
    measure_fn = measure_fn or measure
    snapshot_fn = snapshot_fn or snapshot
    host, version, threads = _cache_key()
    path = cache_path(cache_dir)
    cached = read_cache(cache_dir)
    reason = "forced re-measurement" if force else (
        "no cache file" if cached is None else "")
    if cached is not None and not force:
        known = _CONFIRMED.get(str(path))
        if known is not None and known[0] == _mtime_ns(path):
            return known[1]
        spot, spot_load = _probe(SPOT_ROUNDS, measure_fn, snapshot_fn)
        off = disagreements(cached, spot)
        if not off:
            prov = cached.provenance or RatesProvenance()
            note = (f"read from the cache (measured {cached.measured_at}); a spot check just "
                    f"now agreed within {DISAGREEMENT_FACTOR:g}×")
            confirmed = dataclasses.replace(cached, source="cache", provenance=dataclasses.replace(
                prov, cache_path=str(path), cached=True, note=note, checked_at=now_iso()))
            _CONFIRMED[str(path)] = (_mtime_ns(path), confirmed)
            return confirmed
        reason = "re-measured: a spot check disagreed with the cache (" + ", ".join(
            f"{name} {factor:.1f}× off" for name, factor in off) + ")"
    fields, load = _probe(ROUNDS, measure_fn, snapshot_fn)
    if load.under_load and cached is not None:
        fields = _fastest(cached, fields)
    note = reason
    if load.under_load:
        note += ("; " if note else "") + f"measured under load ({load.reason}): not cached"
        if cached is not None:
            note += "; per rate the faster of the cache and this probe"
    prov = RatesProvenance(
        rounds=ROUNDS, load_average_before=load.load_average_before,
        load_average_after=load.load_average_after, other_busy_cores=load.other_busy_cores,
        own_cpu_ratio=load.own_cpu_ratio, under_load=load.under_load, cache_path=str(path),
        cached=False, note=note)
    rates = MachineRates(source="calibrated", host=host, torch_version=version, threads=threads,
                         measured_at=now_iso(), provenance=prov, **fields)
    if load.under_load:
        warnings.warn(
            f"qnewton calibrated this machine's rates under load ({load.reason}); they are "
            "used for this run but not cached (`qnewton calibrate` measures again)",
            RuntimeWarning, stacklevel=2)
        return rates
    stored = dataclasses.replace(rates, provenance=dataclasses.replace(
        prov, cached=True, note=(note + "; " if note else "") + "measured on a quiet machine, "
        "cached"))
    if not _write_cache(path, stored):
        return rates
    _CONFIRMED[str(path)] = (_mtime_ns(path), dataclasses.replace(stored, source="cache"))
    return stored


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def describe(rates: MachineRates) -> list[tuple[str, str]]:
    """``(label, value)`` rows of a calibration for people: the rates, then their provenance."""
    rows = [
        ("dense rate (Cholesky, fp64)", f"{rates.dense_flops_per_s / 1e9:.3g} GFLOP/s"),
        ("GEMM rate (fp64)", f"{rates.gemm_flops_per_s / 1e9:.3g} GFLOP/s"),
        ("memory bandwidth (matvec)", f"{rates.bandwidth_bytes_per_s / 1e9:.3g} GB/s"),
        ("per-call overhead", f"{rates.call_overhead_s * 1e6:.3g} µs"),
        ("per-CG-iteration overhead", f"{rates.iteration_overhead_s * 1e6:.3g} µs"),
        ("source", rates.source),
        ("host / torch / threads", f"{rates.host or '?'} / {rates.torch_version or '?'} / "
                                   f"{rates.threads}"),
        ("measured at", rates.measured_at or "?"),
    ]
    prov = rates.provenance
    if prov is None:
        rows.append(("provenance", "not recorded (user rates or an older file)"))
        return rows

    def opt(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    rows += [
        ("probe rounds (fastest kept)", str(prov.rounds)),
        ("load average before / after", f"{opt(prov.load_average_before, '.2f')} / "
                                        f"{opt(prov.load_average_after, '.2f')}"),
        ("cores busy with other processes", opt(prov.other_busy_cores, '.2f')),
        ("probe's CPU / wall ratio", opt(prov.own_cpu_ratio, '.2f')),
        ("taken under load", "yes" if prov.under_load else "no"),
        ("cache file", prov.cache_path or "?"),
        ("cached", "yes" if prov.cached else "no"),
        ("last spot check", prov.checked_at or "none"),
        ("note", prov.note or "—"),
    ]
    return rows


__all__ = ["CHECKED_RATES", "DISAGREEMENT_FACTOR", "ROUNDS", "SPOT_ROUNDS", "cache_path",
           "calibrate", "default_cache_dir", "describe", "disagreements", "read_cache",
           "reset_cache"]
