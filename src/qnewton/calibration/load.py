"""The machine's load *during* a calibration probe, from counters read just before and after it.

The 1-minute load average lags by tens of seconds: a probe at load average 0.4–0.95 with a
2-thread GEMM loop running beside it was once cached, and its 100× call overhead then sent most
solves of every later run to the QLSA. So the probe is judged by what happened while it ran:

* ``other_busy_cores``: CPU time the whole machine spent busy (``/proc/stat``) minus this
  process's own CPU time, over the wall time — the cores other processes kept busy;
* ``own_cpu_ratio``: this process's CPU time over the wall time — below ~1 with one thread means
  it waited for a core.

Both are differences of cumulative counters, so a probe of ~1 s sees the load of that second.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

#: Cores other processes may keep busy beyond those the probe leaves free, before the probe
#: counts as under load (half a core: background daemons and jiffy-resolution noise).
SPARE_CORES_ALLOWANCE = 0.5
#: Smallest CPU/wall ratio of the probe process that counts as having had a core to itself: a
#: probe that waited for the CPU more than 1/5 of its time measured the queue, not the machine.
MIN_OWN_CPU_RATIO = 0.8


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative counters at one instant.

    Attributes:
        wall_s: ``time.perf_counter()`` seconds.
        process_cpu_s: this process's user + system CPU seconds, all threads.
        machine_busy_s: seconds all CPUs together spent not idle since boot (``/proc/stat``
            line ``cpu``: every field but idle and iowait, over USER_HZ); ``None`` without it.
        load_average_1m: the 1-minute load average; ``None`` where the system has none.
    """

    wall_s: float
    process_cpu_s: float
    machine_busy_s: float | None
    load_average_1m: float | None


def _machine_busy_seconds(stat_text: str) -> float | None:
    """Non-idle seconds of all CPUs from the text of ``/proc/stat`` (``None`` if unparsable)."""
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
                # already inside user/nice, so only the first eight are summed.
                ticks = [int(v) for v in fields[1:9]]
            except ValueError:
                return None
            if len(ticks) < 4:
                return None
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            return (sum(ticks) - idle) / float(hz)
    return None


def snapshot() -> CpuSnapshot:
    """The counters now (``/proc/stat``, ``os.times()``, ``os.getloadavg()``)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            busy = _machine_busy_seconds(fh.read())
    except OSError:
        busy = None
    try:
        load = float(os.getloadavg()[0])
    except (AttributeError, OSError):
        load = None
    t = os.times()
    return CpuSnapshot(wall_s=time.perf_counter(), process_cpu_s=t.user + t.system,
                       machine_busy_s=busy, load_average_1m=load)


@dataclass(frozen=True)
class ProbeLoad:
    """The load seen by one probe (between two :class:`CpuSnapshot`).

    Attributes:
        load_average_before / load_average_after: 1-minute load averages (``None`` if none).
        other_busy_cores: mean cores busy with other processes (``None`` without /proc/stat).
        own_cpu_ratio: the probe process's CPU seconds / wall seconds.
        under_load: whether the probe counts as taken under load.
        reason: why it does ("" when it does not).
    """

    load_average_before: float | None
    load_average_after: float | None
    other_busy_cores: float | None
    own_cpu_ratio: float | None
    under_load: bool
    reason: str


def probe_load(before: CpuSnapshot, after: CpuSnapshot, cpus: int, threads: int) -> ProbeLoad:
    """Judge a probe that ran between ``before`` and ``after`` on ``cpus`` cores with ``threads``
    torch threads. Under load when other processes kept more than the cores the probe leaves
    free busy (``cpus − min(threads, cpus)``, plus :data:`SPARE_CORES_ALLOWANCE`), when the probe
    had a core for less than :data:`MIN_OWN_CPU_RATIO` of its wall time, or when a load average
    exceeded the core count."""
    wall = max(after.wall_s - before.wall_s, 1e-9)
    own = max(after.process_cpu_s - before.process_cpu_s, 0.0)
    own_ratio = own / wall
    other: float | None = None
    if before.machine_busy_s is not None and after.machine_busy_s is not None:
        other = max((after.machine_busy_s - before.machine_busy_s) - own, 0.0) / wall
    reasons = []
    free = cpus - min(max(threads, 1), cpus)
    if other is not None and other > free + SPARE_CORES_ALLOWANCE:
        reasons.append(f"other processes kept {other:.2f} of {cpus} cores busy during the probe")
    if own_ratio < MIN_OWN_CPU_RATIO:
        reasons.append(f"the probe had a core for only {100 * own_ratio:.0f}% of its time")
    for label, value in (("before", before.load_average_1m), ("after", after.load_average_1m)):
        if value is not None and value > cpus:
            reasons.append(f"the load average {label} the probe was {value:.2f} > {cpus} cores")
    return ProbeLoad(load_average_before=before.load_average_1m,
                     load_average_after=after.load_average_1m, other_busy_cores=other,
                     own_cpu_ratio=own_ratio, under_load=bool(reasons),
                     reason="; ".join(reasons))
