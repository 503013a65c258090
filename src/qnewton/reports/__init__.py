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

Integrity problems (a damaged file, logs that disagree with the summary, a comparison row that
disagrees with its run) are **warnings**: listed at the top of the page and returned by
:func:`make_report`, which ``qnewton report`` prints to stderr. A report with warnings is still
written; a directory that is not a result directory, or whose main file is unreadable, raises
:class:`ValueError`.

Layout (imports point down the list): :mod:`.reading`, :mod:`.html` and :mod:`.figures` read the
files and draw the page; :mod:`.integrity` checks a run's files against each other and
:mod:`.headline` sums a run up; :mod:`.run_plots` holds one module per run plot and the
:data:`~.run_plots.RUN_PLOTS` registry; :mod:`.run`, :mod:`.comparison`, :mod:`.sweep` and
:mod:`.reproduce` build one kind of report each; this module picks the builder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qnewton.registry import Registry
from qnewton.reports.comparison import comparison_report
from qnewton.reports.html import REPORT_NAME, ReportPage
from qnewton.reports.reproduce import reproduce_report
from qnewton.reports.run import run_report
from qnewton.reports.sweep import sweep_report

__all__ = ["write_report", "make_report", "WrittenReport", "ReportError", "ReportPage",
           "detect_kind", "REPORT_KINDS", "REPORT_NAME", "EXPECTED_FILES"]


class ReportError(ValueError):
    """The report cannot be made (not a result directory, or not writable); says what to do."""


@dataclass(frozen=True)
class ReportKind:
    """A kind of result directory: the files that identify it and the builder of its report.

    ``build(directory)`` returns the :class:`~.html.ReportPage` (title, body, warnings, lead)
    and writes the plots into the directory.
    """

    expected_files: tuple[str, ...]
    build: Callable[[Path], ReportPage]


@dataclass(frozen=True)
class WrittenReport:
    """A report written to ``path``, and the integrity warnings it shows at its top."""

    path: Path
    warnings: tuple[str, ...]

    def message(self) -> str:
        """``report written to PATH`` plus the number of warnings, for the CLI's last line."""
        n = len(self.warnings)
        if not n:
            return f"report written to {self.path}"
        return f"report written to {self.path} ({n} warning{'s' if n > 1 else ''}, see above)"


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
        raise ReportError(f"{d} is not a directory; expected a result directory holding "
                          f"{_expected_text()}")
    for name, kind in REPORT_KINDS.items():
        if all((d / f).is_file() for f in kind.expected_files):
            return name
    present = sorted(p.name for p in d.iterdir())[:20]
    raise ReportError(
        f"{d} is not a qnewton result directory: expected {_expected_text()}; "
        f"found {', '.join(present) if present else 'nothing'}"
    )


def make_report(directory: str | Path) -> WrittenReport:
    """Write PNG plots and a self-contained ``report.html`` into ``directory``; return its path
    and the integrity warnings the page lists.

    The kind of directory is detected from the files it holds (see :data:`EXPECTED_FILES`);
    anything else raises :class:`ReportError` (a ``ValueError``) naming the files that were
    expected, as does an unreadable ``comparison.json``/``sweep.json``/``claims.json`` (there is
    nothing to report without it) or a directory the report cannot be written into. Damaged or
    disagreeing run files are warnings; missing optional data (no solves, no exact κ, ...) skips
    what it would feed and says so in a note.
    """
    d = Path(directory)
    kind = REPORT_KINDS[detect_kind(d)]
    out = d / REPORT_NAME
    try:
        built = kind.build(d)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(built.html(), encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise ReportError(
            f"cannot write the report into {d}: {exc.strerror or exc}"
            f"{f' ({exc.filename})' if exc.filename else ''}; make the directory writable, or "
            "copy it somewhere writable and report the copy") from None
    return WrittenReport(out, tuple(built.warnings))


def write_report(directory: str | Path) -> Path:
    """:func:`make_report`, returning only the path of ``report.html``."""
    return make_report(directory).path
