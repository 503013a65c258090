"""Reports: PNG plots and one self-contained ``report.html`` for a result directory.

:func:`write_report` recognises the kinds of directory registered in :data:`REPORT_KINDS`:

* a **reproduce** directory (``claims.json``; may name comparison / sweep sub-directories),
* a **comparison** (``comparison.json``; its rows point at run directories),
* a **sweep** (``sweep.json``; one row per swept value, optionally a classical baseline),
* a **run** (``config.json`` + ``steps.jsonl``, written by :mod:`qnewton.training`).

Every time the report shows is labelled with its kind (docs/method.md §1):

* **measured** — wall clock on this machine (includes the time spent *emulating* quantum solves),
* **modeled** — the hardware profile's cost-model time for the quantum solves (profile named),
* **total** — measured − emulation + modeled, i.e. what training would take had the quantum
  solves run on the named profile instead of being emulated.

Layout (imports point down the list): :mod:`.reading`, :mod:`.html` and :mod:`.figures` read the
files and draw the page; :mod:`.run_plots` holds one module per run plot and the
:data:`~.run_plots.RUN_PLOTS` registry; :mod:`.run`, :mod:`.comparison`, :mod:`.sweep` and
:mod:`.reproduce` build one kind of report each; this module picks the builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qnewton.registry import Registry
from qnewton.reports.comparison import comparison_report
from qnewton.reports.html import REPORT_NAME, page
from qnewton.reports.reproduce import reproduce_report
from qnewton.reports.run import run_report
from qnewton.reports.sweep import sweep_report

__all__ = ["write_report", "detect_kind", "REPORT_KINDS", "REPORT_NAME", "EXPECTED_FILES"]


@dataclass(frozen=True)
class ReportKind:
    """A kind of result directory: the files that identify it and the builder of its report.

    ``build(directory)`` returns the page title and HTML body and writes the plots into the
    directory.
    """

    expected_files: tuple[str, ...]
    build: Callable[[Path], tuple[str, str]]


#: Detection tries the kinds in registration order and takes the first whose files are all
#: present, so a directory holding files of two kinds gets the report registered first.
REPORT_KINDS: Registry[ReportKind] = Registry("report kind")
REPORT_KINDS.register("reproduce", ReportKind(("claims.json",), reproduce_report))
REPORT_KINDS.register("comparison", ReportKind(("comparison.json",), comparison_report))
REPORT_KINDS.register("sweep", ReportKind(("sweep.json",), sweep_report))
REPORT_KINDS.register("run", ReportKind(("config.json", "steps.jsonl"), run_report))

#: What :func:`write_report` looks for, by kind of directory.
EXPECTED_FILES = {name: kind.expected_files for name, kind in REPORT_KINDS.items()}


def _expected_text() -> str:
    options = [f"{' + '.join(kind.expected_files)} ({name})" for name, kind in REPORT_KINDS.items()]
    return f"{', '.join(options[:-1])} or {options[-1]}"


def detect_kind(directory: str | Path) -> str:
    """The name of the :data:`REPORT_KINDS` entry ``directory`` holds; ValueError if none fits."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{d} is not a directory; expected a result directory holding "
                         f"{_expected_text()}")
    for name, kind in REPORT_KINDS.items():
        if all((d / f).is_file() for f in kind.expected_files):
            return name
    present = sorted(p.name for p in d.iterdir())[:20]
    raise ValueError(
        f"{d} is not a qnewton result directory: expected {_expected_text()}; "
        f"found {', '.join(present) if present else 'nothing'}"
    )


def write_report(directory: str | Path) -> Path:
    """Write PNG plots and a self-contained ``report.html`` into ``directory``; return its path.

    The kind of directory is detected from the files it holds (see :data:`EXPECTED_FILES`);
    anything else raises :class:`ValueError` naming the files that were expected, as does an
    unreadable ``comparison.json``/``sweep.json``/``claims.json`` (there is nothing to report
    without it). Missing or unreadable optional data (no summary, no solves, no exact κ, a
    corrupt solves.jsonl, ...) skips what it would feed and says so in the report.
    """
    d = Path(directory)
    title, body = REPORT_KINDS[detect_kind(d)].build(d)
    out = d / REPORT_NAME
    out.write_text(page(title, body), encoding="utf-8")
    return out
