"""The report of a reproduction directory (``claims.json``; may name comparison and sweep
sub-directories).

The page is the claims table with each verdict coloured, then, for each named sub-directory, the
main table and plots of its comparison or sweep (written into the reproduction directory with the
sub-directory as prefix; the sub-directories are only read).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from qnewton.reports.comparison import comparison_plots, comparison_table
from qnewton.reports.figures import Plots
from qnewton.reports.html import REPORT_NAME, ReportPage, esc, note, slug, table
from qnewton.reports.integrity import check_comparison_row, check_run
from qnewton.reports.reading import (
    comparison_runs,
    load_comparison,
    load_sweep,
    read_required_json,
)
from qnewton.reports.sweep import sweep_parts, sweep_table

#: CSS class per verdict (html.CSS colours them); other verdicts ("n/a") stay plain.
VERDICT_CLASSES = {"supported": "supported", "not supported": "not-supported",
                   "partly": "partly"}


def verdict_html(verdict: Any) -> str:
    s = str(verdict or "n/a")
    cls = VERDICT_CLASSES.get(s.lower(), "")
    return f"<span class='{cls}'>{esc(s)}</span>" if cls else esc(s)


def _comparison_section(sub_dir: Path, plots: Plots, warnings: list[str]) -> str:
    data = load_comparison(sub_dir, warnings)
    runs = comparison_runs(sub_dir, data, warnings)
    for row, run in runs:
        if run is not None:
            check_run(run)
            warnings += [f"{row.get('run_dir')}: {w}" for w in run.warnings]
            warnings += check_comparison_row(row, run, data.get("metric"))
    return comparison_table(data) + comparison_plots(data, runs, plots, main_only=True)


def _sweep_section(sub_dir: Path, plots: Plots, warnings: list[str]) -> str:
    data = load_sweep(sub_dir, warnings)
    plots_html, cross_html = sweep_parts(data, plots)
    return cross_html + sweep_table(data) + plots_html


#: claims.json key -> (the file that sub-directory must hold, how its section is drawn).
SUB_DIRECTORIES: dict[str, tuple[str, Callable[[Path, Plots, list[str]], str]]] = {
    "comparisons": ("comparison.json", _comparison_section),
    "sweeps": ("sweep.json", _sweep_section),
}


def _claims_table(claims: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for c in claims:
        counts[str(c.get("verdict", "n/a"))] = counts.get(str(c.get("verdict", "n/a")), 0) + 1
    summary = "<p>" + (", ".join(f"{k}: {v}" for k, v in counts.items()) or "no claims") + "</p>"
    rows = [[esc(c.get("claim", "")), esc(c.get("paper", "")), esc(c.get("profile", "")),
             esc(c.get("ours", "")), verdict_html(c.get("verdict")), esc(c.get("details", ""))]
            for c in claims]
    return summary + table(["claim", "paper says", "profile (modeled times)", "ours", "verdict",
                            "details"], rows, raw=True)


def reproduce_report(d: Path) -> ReportPage:
    """The report of reproduction directory ``d``."""
    warnings: list[str] = []
    data = read_required_json(d / "claims.json")
    claims = [c for c in data.get("claims", []) or [] if isinstance(c, dict)]
    parts = ["<h2>Claims</h2>", _claims_table(claims)]
    for group, (fname, draw_section) in SUB_DIRECTORIES.items():
        subs = [s for s in data.get(group, []) or [] if isinstance(s, str)]
        if not subs:
            continue
        parts.append(f"<h2>{group.capitalize()}</h2>")
        for rel in subs:
            sub_dir = d / rel
            parts.append(f"<h3>{esc(rel)}</h3>")
            if not (sub_dir / fname).is_file():
                warnings.append(f"{rel}: no {fname} there; its plots are skipped.")
                parts.append(note(f"{rel}: no {fname} there; its plots are skipped."))
                continue
            sub_warnings: list[str] = []
            try:
                body = draw_section(sub_dir, Plots(d, prefix=f"{slug(rel)}_"), sub_warnings)
            except ValueError as exc:
                warnings.append(f"{rel}: could not be read ({exc}).")
                parts.append(note(f"{rel}: could not be read ({exc})."))
                continue
            warnings += [f"{rel}: {w}" for w in sub_warnings]
            if (sub_dir / REPORT_NAME).is_file():
                href = esc(quote(f"{rel}/{REPORT_NAME}"))
                body = (f"<p>Full report: <a href='{href}'><code>{esc(rel)}/{REPORT_NAME}</code>"
                        "</a></p>" + body)
            parts.append(body)
    return ReportPage("qnewton reproduction report", "".join(parts), warnings)
