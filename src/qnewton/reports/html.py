"""The report page: template, inline CSS, tables, notes and number formatting.

The page carries its CSS inline and embeds its images (see :mod:`.figures`): it opens anywhere,
with no external resources. Every cell and note is HTML-escaped unless a caller says it is
already HTML.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qnewton.reports.reading import num

REPORT_NAME = "report.html"

#: Labels for the two clocks whose seconds a report shows (docs/method.md §1).
MEASURED = "measured (wall clock, this machine)"
TOTAL = "total (= measured − emulation + modeled)"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ints as is, floats to ``digits`` significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    x = num(value)
    if x is None:
        return esc(value)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def secs(value: Any) -> str:
    x = num(value)
    return "—" if x is None else f"{fmt(x)} s"


def slug(text: str) -> str:
    """``text`` reduced to a file-name-safe prefix (``qnewton@paper`` -> ``qnewton-paper``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], raw: bool = False) -> str:
    """An HTML table; cells are escaped (``raw``: cells are already HTML)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td>{c if raw else esc(c)}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return "<p class='note'>(no rows)</p>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of labelled values."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs)
    return f"<table class='kv'><tbody>{rows}</tbody></table>"


def note(text: str) -> str:
    """A highlighted remark: something skipped, missing or unreadable, and why."""
    return f"<p class='note'>{esc(text)}</p>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1150px;padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #444;padding-bottom:.2em}
h2{margin-top:1.8em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
thead th{background:#f0f0f0;position:sticky;top:0}
tbody tr:nth-child(even){background:#fafafa}
table.kv th{background:#f6f6f6;font-weight:600}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.88em;color:#555}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.35em .7em}
.warnings{background:#fdecea;border-left:4px solid #c62828;padding:.4em .9em;margin:.8em 0}
.warnings ul{margin:.3em 0;padding-left:1.2em}
.headline{background:#f4f8f4;border-left:4px solid #2e7d32;padding:.3em .9em;margin:.8em 0;
font-size:1.02em}.headline p{margin:.35em 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:.8em}
.card{border:1px solid #ddd;padding:.4em .8em;font-size:.9em}.card h3{margin:.3em 0}
.legend{background:#eef5ff;border-left:4px solid #3d7bd9;padding:.4em .8em;font-size:.92em}
.supported{color:#1a7f37;font-weight:600}.not-supported{color:#c62828;font-weight:600}
.partly{color:#b26a00;font-weight:600}
details{margin:.8em 0;border:1px solid #ddd;padding:.3em .8em}
summary{cursor:pointer;font-weight:600}
code{background:#f3f3f3;padding:0 .2em}
"""

TIME_LEGEND = (
    "<div class='legend'><b>Time labels.</b> <b>measured</b> = wall clock on this machine "
    "(includes the time spent <i>emulating</i> quantum solves); <b>modeled</b> = the hardware "
    "profile's cost-model time for the quantum solves (the profile is named each time); "
    "<b>total</b> = measured − emulation + modeled, i.e. the training time had the quantum solves "
    "run on that profile. Measured and modeled seconds are never added without saying so.</div>"
)


def warnings_box(warnings: Sequence[str]) -> str:
    """The integrity warnings, listed at the top of the page (empty when there are none)."""
    if not warnings:
        return ""
    items = "".join(f"<li class='warning'>{esc(w)}</li>" for w in warnings)
    n = len(warnings)
    return (f"<div class='warnings'><b>{n} integrity warning{'s' if n > 1 else ''}</b> — the "
            f"files disagree or are damaged; read the figures below with this in mind:"
            f"<ul>{items}</ul></div>")


def page(title: str, body: str, warnings: Sequence[str] = (), lead: str = "") -> str:
    """The whole self-contained HTML document: title, warnings, ``lead`` (a headline), the
    time-label legend, then ``body``."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>{warnings_box(warnings)}{lead}{TIME_LEGEND}{body}</body></html>\n"
    )


@dataclass
class ReportPage:
    """What a report builder returns: the page's title and body, the integrity warnings to list
    at its top, and an optional lead (a headline) shown under them."""

    title: str
    body: str
    warnings: list[str] = field(default_factory=list)
    lead: str = ""

    def html(self) -> str:
        return page(self.title, self.body, self.warnings, self.lead)
