"""Throughput figures of the machine the classical solvers run on (the input of their time models).

Measured by :func:`qnewton.calibration.calibrate` (a short probe, cached) or given by the user.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qnewton.validation import check_choice, check_int, check_nonnegative, check_positive

#: Bandwidth assumed by :meth:`MachineRates.user` when the user gives only flop rates. A
#: documented placeholder for user-specified rates, never used as this machine's measured rate.
USER_DEFAULT_BANDWIDTH_BYTES_PER_S = 1e10

RATE_SOURCES = ("calibrated", "cache", "user")


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RatesProvenance:
    """How a calibration came about (:func:`qnewton.calibration.calibrate`), so that a run's files
    and its report say which rates decided its routing and how far to trust them.

    Attributes:
        rounds: interleaved probe rounds; each rate is the fastest round's (minimum time).
        load_average_before / load_average_after: the 1-minute load average around the probe
            (``None`` where the operating system has none). It lags, so it is recorded, not
            trusted alone.
        other_busy_cores: mean CPU cores that *other* processes kept busy during the probe
            (machine busy time from ``/proc/stat`` minus this process's CPU time, over the wall
            time); ``None`` without ``/proc/stat``.
        own_cpu_ratio: this process's CPU seconds / wall seconds during the probe (below 1 with
            one thread: it waited for a core).
        under_load: whether the probe counts as taken under load (then it is not cached).
        cache_path: the cache file these rates were read from or checked against.
        cached: whether these rates are (now) the cache file's content.
        note: one line on where the rates come from (measured and cached; measured under load
            and not cached; read from the cache and confirmed by a spot check; re-measured
            because the cache disagreed with a spot check, with the factor).
        checked_at: ISO-8601 time of the last spot check against this machine ("" if none).
    """

    rounds: int = 0
    load_average_before: float | None = None
    load_average_after: float | None = None
    other_busy_cores: float | None = None
    own_cpu_ratio: float | None = None
    under_load: bool = False
    cache_path: str = ""
    cached: bool = False
    note: str = ""
    checked_at: str = ""


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
        provenance: how a calibration came about (:class:`RatesProvenance`); ``None`` for
            user rates and for files written before it was recorded.
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
    provenance: RatesProvenance | None = None

    def __post_init__(self) -> None:
        check_positive("dense_flops_per_s", self.dense_flops_per_s)
        check_positive("gemm_flops_per_s", self.gemm_flops_per_s)
        check_positive("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)
        check_choice("source", self.source, RATE_SOURCES)
        check_int("threads", self.threads, 0)
        check_nonnegative("call_overhead_s", self.call_overhead_s)
        check_nonnegative("iteration_overhead_s", self.iteration_overhead_s)

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
            measured_at=now_iso(),
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
        fields = dict(d)
        prov = fields.get("provenance")
        if prov is not None:
            if not isinstance(prov, Mapping):
                raise ValueError("rates provenance must be a mapping, got "
                                 f"{type(prov).__name__}")
            try:
                fields["provenance"] = RatesProvenance(**dict(prov))
            except TypeError as exc:
                raise ValueError(f"invalid rates provenance: {exc}") from None
        try:
            return cls(**fields)
        except TypeError as exc:  # missing required fields
            raise ValueError(f"invalid MachineRates definition: {exc}") from None

    def forming_seconds(self, n: int, rows: int) -> float:
        """Seconds to form ``A = s·FᵀF + λI`` (N×N) from an M-row factor: the product
        ``2·N²·M / R_gemm`` plus one scaling pass reading and writing N² fp64 values."""
        return 2.0 * n * n * rows / self.gemm_flops_per_s + 16.0 * n * n / (
            self.bandwidth_bytes_per_s)
