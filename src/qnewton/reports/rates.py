"""The report's section on the machine rates that routed a run: the classical time models'
rates with their provenance (:class:`~qnewton.solvers.rates.RatesProvenance`) and the machine's
threads and load average at the start and end of the run. A routing decision is only as good as
these rates, so the report shows them instead of leaving them in ``config.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qnewton.calibration import describe
from qnewton.reports.html import kv_table, note
from qnewton.reports.reading import RunData
from qnewton.solvers.rates import MachineRates

#: Heading of the section.
RATES_HEADING = "Machine rates behind the classical predictions"


def _machine(label: str, state: Any) -> list[tuple[str, str]]:
    if not isinstance(state, Mapping):
        return []
    load = state.get("load_average")
    load_text = ("n/a" if not isinstance(load, list) else
                 " / ".join(f"{float(v):.2f}" for v in load) + " (1 / 5 / 15 min)")
    return [(f"{label}: threads, cores", f"{state.get('threads')}, {state.get('cpus')}"),
            (f"{label}: load average", load_text)]


def rates_html(run: RunData) -> str:
    """The rates table (from ``config.json``'s ``rates``), or a note saying why there is none."""
    saved = run.config.get("rates")
    if not isinstance(saved, Mapping):
        return note("config.json records no machine rates.")
    try:
        rates = MachineRates.from_dict(saved)
    except ValueError as exc:
        return note(f"config.json's machine rates are unreadable: {exc}.")
    rows = describe(rates)
    rows += _machine("run start", run.config.get("machine_at_start"))
    rows += _machine("run end", (run.summary or {}).get("machine_at_end"))
    parts = [kv_table(rows)]
    prov = rates.provenance
    if prov is not None and prov.under_load:
        parts.append(note("These rates were measured under load and may be biased (slower "
                          "classical predictions favour the QLSA); `qnewton calibrate` on an "
                          "idle machine measures them again."))
    return "".join(parts)
