"""Reports: PNG plots and one self-contained ``report.html`` for a result directory.

:func:`write_report` recognises four kinds of directory:

* a **run** (``config.json`` + ``steps.jsonl``, written by :mod:`qnewton.training`),
* a **comparison** (``comparison.json``; its rows point at run directories),
* a **sweep** (``sweep.json``; one row per swept value, optionally a classical baseline),
* a **reproduce** directory (``claims.json``; may name comparison / sweep sub-directories).

Every time the report shows is labelled with its kind (DESIGN §1):

* **measured** — wall clock on this machine (includes the time spent *emulating* quantum solves),
* **modeled** — the hardware profile's cost-model time for the quantum solves (profile named),
* **total** — measured − emulation + modeled, i.e. what training would take had the quantum
  solves run on the named profile instead of being emulated.

Plots are drawn on :class:`matplotlib.figure.Figure` objects attached to an Agg canvas: no
``pyplot``, no global backend switch, no display needed. The HTML embeds the PNGs as base64
data URIs and carries its CSS inline: it opens anywhere, with no external resources.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = ["write_report", "detect_kind", "find_crossovers", "REPORT_NAME", "EXPECTED_FILES"]

REPORT_NAME = "report.html"

#: What :func:`write_report` looks for, by kind of directory.
EXPECTED_FILES = {
    "run": ("config.json", "steps.jsonl"),
    "comparison": ("comparison.json",),
    "sweep": ("sweep.json",),
    "reproduce": ("claims.json",),
}

MEASURED = "measured (wall clock, this machine)"
TOTAL = "total (= measured − emulation + modeled)"
PHASE_ORDER = ("forward_backward", "curvature", "conditioning", "estimation", "scheduling",
               "solve", "update")
KAPPA_MARKERS = {"upper": ("v", "upper bound"), "lower": ("^", "lower bound"),
                 "exact": ("o", "exact"), "estimate": ("s", "estimate")}
QUANTUM_COLOR = "#d62728"
CLASSICAL_COLOR = "#1f77b4"
NONE_COLOR = "#eeeeee"


# -- public API -------------------------------------------------------------------------------
def detect_kind(directory: str | Path) -> str:
    """``"reproduce"``, ``"comparison"``, ``"sweep"`` or ``"run"``; ValueError if none fits."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{d} is not a directory; expected a result directory holding "
                         f"{_expected_text()}")
    for kind in ("reproduce", "comparison", "sweep", "run"):
        if all((d / name).is_file() for name in EXPECTED_FILES[kind]):
            return kind
    present = sorted(p.name for p in d.iterdir())[:20]
    raise ValueError(
        f"{d} is not a qnewton result directory: expected {_expected_text()}; "
        f"found {', '.join(present) if present else 'nothing'}"
    )


def write_report(directory: str | Path) -> Path:
    """Write PNG plots and a self-contained ``report.html`` into ``directory``; return its path.

    The kind of directory is detected from the files it holds (see :data:`EXPECTED_FILES`);
    anything else raises :class:`ValueError` naming the files that were expected. Missing optional
    data (no summary, no solves, no exact κ, no evaluations, ...) skips the plot it would feed and
    says so in the report.
    """
    d = Path(directory)
    kind = detect_kind(d)
    builder = {"run": _run_report, "comparison": _comparison_report, "sweep": _sweep_report,
               "reproduce": _reproduce_report}[kind]
    title, body = builder(d)
    out = d / REPORT_NAME
    out.write_text(_page(title, body), encoding="utf-8")
    return out


def _expected_text() -> str:
    return ("config.json + steps.jsonl (run), comparison.json (comparison), sweep.json (sweep) "
            "or claims.json (reproduce)")


# -- reading ----------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    """A float from a JSON value ("inf"/"nan" strings included); None when absent/not numeric."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _finite(value: Any) -> float | None:
    x = _num(value)
    return x if x is not None and math.isfinite(x) else None


def _read_json(path: Path, notes: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        notes.append(f"{path.name} could not be read ({exc}); ignored.")
        return None


def _read_jsonl(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; blank lines skipped, unreadable lines skipped and counted."""
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        notes.append(f"{path.name}: {bad} unreadable line(s) skipped "
                     "(torn write of a killed run?).")
    return rows


@dataclass
class RunData:
    path: Path
    config: dict[str, Any]
    steps: list[dict[str, Any]]
    solves: list[dict[str, Any]]
    events: list[dict[str, Any]]
    summary: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    @property
    def cfg(self) -> dict[str, Any]:
        inner = self.config.get("config")
        return inner if isinstance(inner, dict) else {}

    def get(self, key: str, default: Any = None) -> Any:
        """A run attribute from summary.json, else config.json's config."""
        if self.summary and self.summary.get(key) is not None:
            return self.summary[key]
        return self.cfg.get(key, default)

    @property
    def hardware(self) -> str:
        hw = self.get("hardware")
        if hw:
            return str(hw)
        return "none" if self.summary or self.cfg else "unknown"

    @property
    def optimizer(self) -> str:
        return str(self.get("optimizer") or "unknown optimizer")

    @property
    def metric(self) -> str | None:
        m = self.summary.get("metric") if self.summary else None
        if m in ("accuracy", "perplexity"):
            return m
        for row in self.steps:
            if "test_accuracy" in row:
                return "accuracy"
            if "test_perplexity" in row:
                return "perplexity"
        return None

    def evaluations(self) -> list[dict[str, Any]]:
        key = f"test_{self.metric}" if self.metric else None
        if key is None:
            return []
        return [r for r in self.steps if _finite(r.get(key)) is not None]


def _load_run(path: Path) -> RunData:
    notes: list[str] = []
    config = _read_json(path / "config.json", notes)
    summary = _read_json(path / "summary.json", notes)
    if not isinstance(config, dict):
        notes.append("config.json missing or not an object: configuration unknown.")
        config = {}
    if summary is not None and not isinstance(summary, dict):
        summary = None
    steps = _read_jsonl(path / "steps.jsonl", notes)
    no_step = [r for r in steps if _finite(r.get("step")) is None]
    if no_step:
        notes.append(f"steps.jsonl: {len(no_step)} row(s) without a step number ignored.")
    steps = sorted((r for r in steps if _finite(r.get("step")) is not None),
                   key=lambda r: _finite(r["step"]))
    if not steps:
        notes.append("steps.jsonl has no rows yet: nothing to plot over training.")
    solves = _read_jsonl(path / "solves.jsonl", notes)
    events = _read_jsonl(path / "events.jsonl", notes)
    return RunData(path, config, steps, solves, events, summary, notes)


def _total_of(row: dict[str, Any]) -> float | None:
    """``total_seconds`` of a row, or measured − emulation + modeled when only parts are given."""
    t = _finite(row.get("total_seconds"))
    if t is not None:
        return t
    m = _finite(row.get("measured_seconds"))
    if m is None:
        return None
    return m - (_finite(row.get("emulation_seconds")) or 0.0) + (
        _finite(row.get("modeled_quantum_seconds")) or 0.0)


# -- formatting -------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    x = _num(value)
    if x is None:
        return _esc(value)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _secs(value: Any) -> str:
    x = _num(value)
    return "—" if x is None else f"{_fmt(x)} s"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], raw: bool = False) -> str:
    """An HTML table; cells are escaped (``raw``: cells are already HTML)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td>{c if raw else _esc(c)}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return "<p class='note'>(no rows)</p>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_table(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in pairs)
    return f"<table class='kv'><tbody>{rows}</tbody></table>"


def _note(text: str) -> str:
    return f"<p class='note'>{_esc(text)}</p>"


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


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>{TIME_LEGEND}{body}</body></html>\n"
    )


# -- figures ----------------------------------------------------------------------------------
class Plots:
    """Writes figures as PNG into ``out_dir`` (names prefixed) and renders them as <figure>."""

    def __init__(self, out_dir: Path, prefix: str = "") -> None:
        self.out_dir = out_dir
        self.prefix = prefix
        self.written: list[Path] = []

    def save(self, fig: Figure, name: str, caption: str) -> str:
        path = self.out_dir / f"{self.prefix}{name}"
        FigureCanvasAgg(fig)
        fig.savefig(path, format="png", dpi=100)
        self.written.append(path)
        return _embed(path, caption)


def _embed(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{_esc(path.name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_esc(path.name)}: {_esc(caption)}</figcaption></figure>")


def _fig(ncols: int = 1, width: float = 7.5, height: float = 4.2) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _spans_decades(values: Iterable[float | None], decades: float = 2.0) -> bool:
    pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return len(pos) >= 2 and math.log10(max(pos) / min(pos)) >= decades


def _colors(n: int) -> list[Any]:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# -- run report -------------------------------------------------------------------------------
def _run_report(d: Path) -> tuple[str, str]:
    run = _load_run(d)
    title = f"qnewton run report — {d.name}"
    return title, _run_body(run, Plots(d))


def _run_body(run: RunData, plots: Plots, level: int = 2) -> str:
    """All sections of a run report (plots written through ``plots``)."""
    h = f"h{level}"
    parts: list[str] = []
    for n in run.notes:
        parts.append(_note(n))
    parts.append(f"<{h}>Summary</{h}>")
    parts.append(_run_summary(run))
    parts.append(f"<{h}>Training curves</{h}>")
    parts.append(_plot_loss(run, plots))
    parts.append(_plot_metric_time(run, plots))
    parts.append(f"<{h}>Hessian blocks</{h}>")
    if not run.solves:
        parts.append(_note(
            f"No Hessian solves recorded (solves.jsonl empty or absent; optimizer "
            f"{run.optimizer}): κ, sparsity and routing plots skipped."))
    else:
        parts.append(_plot_kappa(run, plots))
        parts.append(_plot_sparsity(run, plots))
        parts.append(_plot_routing(run, plots))
        parts.append(_block_table(run))
    parts.append(f"<{h}>Time breakdown</{h}>")
    parts.append(_plot_time_breakdown(run, plots))
    parts.append(f"<{h}>Events</{h}>")
    parts.append(_events_table(run))
    return "".join(parts)


def _final_values(run: RunData) -> tuple[dict[str, Any], str]:
    """Final totals from summary.json, or from the last steps row when the run was killed."""
    if run.summary:
        return run.summary, "summary.json"
    last = run.steps[-1] if run.steps else {}
    vals = dict(last)
    vals["steps"] = last.get("step")
    vals["status"] = "unknown: summary.json missing (run killed?)"
    evals = run.evaluations()
    if evals and run.metric:
        key = f"test_{run.metric}"
        vals[key] = evals[-1][key]
        vals["test_loss"] = evals[-1].get("test_loss")
        vals["metric_at_step"] = evals[-1].get("step")
    return vals, "the last row of steps.jsonl"


def _run_summary(run: RunData) -> str:
    vals, source = _final_values(run)
    parts = []
    if run.summary is None:
        parts.append(_note(
            "summary.json is missing (the run was killed or is still running): the figures below "
            f"come from {source}; per-phase times are not available."))
    metric = run.metric
    metric_key = f"test_{metric}" if metric else None
    hw = run.hardware
    pairs: list[tuple[str, Any]] = [
        ("status", vals.get("status", "—")),
        ("task", run.get("task", "—")),
        ("optimizer", run.optimizer),
        ("hardware profile (for modeled times)", hw),
        ("steps", _fmt(vals.get("steps"))),
    ]
    for key in ("epochs", "batch_size", "seed", "curvature", "policy", "qlsa", "readout"):
        if key in run.cfg:
            pairs.append((f"config: {key}", _fmt(run.cfg[key]) if run.cfg[key] is not None
                          else "—"))
    if run.config.get("learning_rate") is not None:
        pairs.append(("learning rate", _fmt(run.config["learning_rate"])))
    if metric_key:
        label = f"final test {metric}"
        if "metric_at_step" in vals:
            label += f" (evaluated at step {vals['metric_at_step']})"
        pairs.append((label, _fmt(vals.get(metric_key))))
    else:
        pairs.append(("final test metric", "no evaluation recorded"))
    pairs.append(("final test loss", _fmt(vals.get("test_loss"))))
    pairs += [
        (f"{MEASURED} seconds", _secs(vals.get("measured_seconds"))),
        ("emulation seconds (measured; part of measured)", _secs(vals.get("emulation_seconds"))),
        (f"modeled quantum seconds (profile {hw})", _secs(vals.get("modeled_quantum_seconds"))),
        (f"{TOTAL} seconds (profile {hw})", _secs(_total_of(vals))),
        ("quantum solves", _fmt(vals.get("quantum_solves"))),
        ("classical solves", _fmt(vals.get("classical_solves"))),
    ]
    if "gradient_fallbacks" in vals:
        pairs.append(("gradient fallbacks", _fmt(vals.get("gradient_fallbacks"))))
    by_profile = vals.get("modeled_by_profile")
    if isinstance(by_profile, dict) and by_profile:
        pairs.append(("modeled seconds by profile",
                      ", ".join(f"{k}: {_secs(v)}" for k, v in by_profile.items())))
    parts.append(_kv_table(pairs))
    return "".join(parts)


def _plot_loss(run: RunData, plots: Plots) -> str:
    train = [(r["step"], _finite(r.get("loss"))) for r in run.steps
             if _finite(r.get("loss")) is not None and not r.get("initial")]
    test_loss = [(r["step"], _finite(r.get("test_loss"))) for r in run.steps
                 if _finite(r.get("test_loss")) is not None]
    evals = run.evaluations()
    if not train and not test_loss and not evals:
        return _note("Loss/metric plot skipped: steps.jsonl has no loss and no evaluation rows.")
    fig, (ax1, ax2) = _fig(2, width=10)
    if train:
        ax1.plot(*zip(*train, strict=True), color="#555", lw=1, label="training loss (batch)")
    if test_loss:
        ax1.plot(*zip(*test_loss, strict=True), "o-", color="#d62728", ms=4, label="test loss")
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("loss")
    ax1.set_title("loss vs step")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    note = ""
    if evals and run.metric:
        key = f"test_{run.metric}"
        ax2.plot([r["step"] for r in evals], [_finite(r[key]) for r in evals], "o-",
                 color="#2ca02c", ms=4)
        ax2.set_ylabel(f"test {run.metric}")
        if run.metric == "perplexity" and _spans_decades([_finite(r[key]) for r in evals], 1):
            ax2.set_yscale("log")
        ax2.set_title(f"test {run.metric} vs step")
        ax2.grid(alpha=0.3)
    else:
        ax2.text(0.5, 0.5, "no test evaluation recorded", ha="center", va="center",
                 transform=ax2.transAxes)
        ax2.set_axis_off()
        note = _note("No test evaluation rows in steps.jsonl: the metric panel is empty.")
    ax2.set_xlabel("optimizer step")
    return plots.save(fig, "loss.png", "training/test loss and test metric vs optimizer step "
                      "(step 0 = evaluation before training).") + note


def _plot_metric_time(run: RunData, plots: Plots) -> str:
    evals = run.evaluations()
    if not evals or not run.metric:
        return _note("Metric-vs-time plot skipped: no test evaluation recorded in steps.jsonl.")
    key = f"test_{run.metric}"
    hw = run.hardware
    tot = [(_total_of(r), _finite(r[key])) for r in evals if _total_of(r) is not None]
    mea = [(_finite(r.get("measured_seconds")), _finite(r[key])) for r in evals
           if _finite(r.get("measured_seconds")) is not None]
    if not tot and not mea:
        return _note("Metric-vs-time plot skipped: evaluation rows carry no times.")
    fig, ax = _fig()
    logx = _spans_decades([t for t, _ in tot] + [t for t, _ in mea], 2)
    dropped = 0
    if logx:
        n = len(tot) + len(mea)
        tot = [p for p in tot if p[0] > 0]
        mea = [p for p in mea if p[0] > 0]
        dropped = n - len(tot) - len(mea)
        ax.set_xscale("log")
    if tot:
        ax.plot(*zip(*tot, strict=True), "o-", color=QUANTUM_COLOR, ms=4,
                label=f"vs total seconds (measured − emulation + modeled on {hw})")
    if mea:
        ax.plot(*zip(*mea, strict=True), "s--", color=CLASSICAL_COLOR, ms=4,
                label="vs measured seconds (wall clock, incl. emulation)")
    ax.set_xlabel("cumulative seconds (line label says which kind)")
    ax.set_ylabel(f"test {run.metric}")
    ax.set_title(f"test {run.metric} vs cumulative time: total vs measured")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    cap = (f"test {run.metric} against cumulative total seconds (profile {hw}) and against "
           "cumulative measured seconds; two different clocks, drawn on one axis for comparison.")
    if dropped:
        cap += f" Log x axis: {dropped} point(s) at 0 s not shown."
    return plots.save(fig, "metric_time.png", cap)


def _blocks(run: RunData) -> list[str]:
    seen: dict[str, None] = {}
    for s in run.solves:
        seen.setdefault(str(s.get("block", "?")), None)
    return list(seen)


def _solve_step(s: dict[str, Any]) -> int | None:
    """The steps.jsonl step a solve belongs to (solves count 0-based, steps rows 1-based)."""
    x = _finite(s.get("step"))
    return None if x is None else int(x) + 1


def _plot_kappa(run: RunData, plots: Plots) -> str:
    blocks = _blocks(run)
    colors = dict(zip(blocks, _colors(len(blocks)), strict=True))
    fig, ax = _fig(width=8.5, height=4.6)
    kinds_seen: set[str] = set()
    skipped = 0
    n_exact = 0
    for b in blocks:
        rows = [s for s in run.solves if str(s.get("block", "?")) == b]
        for kind in sorted({str(s.get("kappa_kind", "estimate")) for s in rows}):
            pts = [(_solve_step(s), _finite(s.get("kappa"))) for s in rows
                   if str(s.get("kappa_kind", "estimate")) == kind]
            good = [p for p in pts if p[0] is not None and p[1] is not None and p[1] > 0]
            skipped += len(pts) - len(good)
            if good:
                marker = KAPPA_MARKERS.get(kind, ("D", kind))[0]
                kinds_seen.add(kind)
                ax.scatter(*zip(*good, strict=True), marker=marker, s=26, color=colors[b],
                           alpha=0.85)
        exact = [(_solve_step(s), _finite(s.get("kappa_exact"))) for s in rows]
        exact = [p for p in exact if p[0] is not None and p[1] is not None and p[1] > 0]
        if exact:
            n_exact += len(exact)
            ax.plot(*zip(*exact, strict=True), "x--", color=colors[b], lw=1, ms=6)
    if not kinds_seen and not n_exact:
        return _note("κ plot skipped: no finite positive κ in solves.jsonl.")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("condition number κ")
    ax.set_title("κ per block over training")
    ax.grid(alpha=0.3, which="both")
    handles = [Line2D([], [], color=colors[b], lw=3, label=f"block {b}") for b in blocks]
    handles += [Line2D([], [], ls="", marker=KAPPA_MARKERS.get(k, ("D", k))[0], color="gray",
                       label=f"estimated κ: {KAPPA_MARKERS.get(k, ('D', k))[1]}")
                for k in sorted(kinds_seen)]
    if n_exact:
        handles.append(Line2D([], [], ls="--", marker="x", color="gray", label="exact κ"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    cap = ("estimated κ per block (marker: upper bound ▼ / lower bound ▲ / exact ● / estimate ■) "
           "and exact κ (dashed, ×) where it was computed.")
    out = plots.save(fig, "kappa.png", cap)
    if not n_exact:
        out += _note("No exact κ recorded (kappa_exact absent or null): only estimates shown.")
    if skipped:
        out += _note(f"{skipped} κ estimate(s) not finite or not positive: not plotted.")
    return out


def _last_per_step(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    by_step: dict[int, float] = {}
    for s in rows:
        st, v = _solve_step(s), _finite(s.get(key))
        if st is not None and v is not None:
            by_step[st] = v
    return sorted(by_step.items())


def _plot_sparsity(run: RunData, plots: Plots) -> str:
    blocks = _blocks(run)
    colors = _colors(len(blocks))
    fig, (ax1, ax2) = _fig(2, width=10)
    any_d = any_n = False
    all_d: list[float] = []
    all_n: list[float] = []
    for b, c in zip(blocks, colors, strict=True):
        rows = [s for s in run.solves if str(s.get("block", "?")) == b]
        dd, nn = _last_per_step(rows, "d"), _last_per_step(rows, "n")
        if dd:
            any_d = True
            all_d += [v for _, v in dd]
            ax1.plot(*zip(*dd, strict=True), ".-", color=c, label=f"{b}")
        if nn:
            any_n = True
            all_n += [v for _, v in nn]
            ax2.plot(*zip(*nn, strict=True), ".-", color=c, label=f"{b}")
    if not any_d and not any_n:
        return _note("Sparsity plot skipped: solves.jsonl carries no d / n.")
    for ax, vals, lab, title in ((ax1, all_d, "d (max nonzeros per row)", "row sparsity d"),
                                 (ax2, all_n, "N (block dimension)", "block size N")):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(lab)
        ax.set_title(f"{title} per block")
        if _spans_decades(vals, 1.5):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="block", title_fontsize=7)
    return plots.save(fig, "sparsity.png", "row sparsity d and dimension N of the matrix actually "
                      "solved, per block and step.")


def _plot_routing(run: RunData, plots: Plots) -> str:
    blocks = _blocks(run)
    steps = [st for st in (_solve_step(s) for s in run.solves) if st is not None]
    if not steps:
        return _note("Routing plot skipped: solves carry no step.")
    s0, s1 = min(steps), max(steps)
    grid = np.zeros((len(blocks), s1 - s0 + 1), dtype=float)
    row_of = {b: i for i, b in enumerate(blocks)}
    retry: list[tuple[int, int]] = []
    grad: list[tuple[int, int]] = []
    for s in run.solves:
        st = _solve_step(s)
        if st is None:
            continue
        i = row_of[str(s.get("block", "?"))]
        grid[i, st - s0] = 2.0 if s.get("choice") == "quantum" else 1.0
        if s.get("fallback") == "retry":
            retry.append((st, i))
        elif s.get("fallback") == "gradient":
            grad.append((st, i))
    fig, ax = _fig(width=9, height=max(2.4, 0.9 + 0.45 * len(blocks)))
    cmap = ListedColormap([NONE_COLOR, CLASSICAL_COLOR, QUANTUM_COLOR])
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=2.5, aspect="auto", interpolation="nearest",
              extent=(s0 - 0.5, s1 + 0.5, len(blocks) - 0.5, -0.5))
    if retry:
        ax.scatter(*zip(*retry, strict=True), marker="o", facecolors="none", edgecolors="black",
                   s=40, linewidths=1.4)
    if grad:
        ax.scatter(*zip(*grad, strict=True), marker="x", color="black", s=46, linewidths=1.8)
    ax.set_yticks(range(len(blocks)), labels=blocks, fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_title("routing per block and step")
    handles = [Patch(color=QUANTUM_COLOR, label="quantum (emulated; time modeled)"),
               Patch(color=CLASSICAL_COLOR, label="classical (time measured)"),
               Patch(color=NONE_COLOR, label="no solve")]
    if retry:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="black",
                              label="fallback: retry"))
    if grad:
        handles.append(Line2D([], [], ls="", marker="x", color="black",
                              label="fallback: gradient step"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    n_q = sum(1 for s in run.solves if s.get("choice") == "quantum")
    cap = (f"which solver each block went to at each step ({n_q} quantum, "
           f"{len(run.solves) - n_q} classical); fallbacks marked: {len(retry)} retry, "
           f"{len(grad)} gradient.")
    return plots.save(fig, "routing.png", cap)


def _block_table(run: RunData) -> str:
    hw = run.hardware
    rows = []
    for b in _blocks(run):
        ss = [s for s in run.solves if str(s.get("block", "?")) == b]
        q = [s for s in ss if s.get("choice") == "quantum"]
        kap = sorted(k for k in (_finite(s.get("kappa")) for s in ss) if k is not None)
        kex = [k for k in (_finite(s.get("kappa_exact")) for s in ss) if k is not None]
        meas = sum(_finite(s.get("measured_classical_seconds")) or 0.0 for s in ss)
        mod = sum(_finite(s.get("modeled_quantum_seconds")) or 0.0 for s in ss)
        fb = sum(1 for s in ss if s.get("fallback"))
        last = ss[-1]
        rows.append([b, len(ss), len(q), len(ss) - len(q), fb,
                     _fmt(kap[len(kap) // 2]) if kap else "—",
                     _fmt(kex[-1]) if kex else "—",
                     _fmt(last.get("n")), _fmt(last.get("d")),
                     _secs(meas), _secs(mod)])
    return "<p>Per block:</p>" + _table(
        ["block", "solves", "quantum", "classical", "fallbacks", "median estimated κ",
         "last exact κ", "last N", "last d", "classical solve seconds (measured)",
         f"quantum solve seconds (modeled, {hw})"], rows)


def _plot_time_breakdown(run: RunData, plots: Plots) -> str:
    vals, source = _final_values(run)
    hw = run.hardware
    measured = _finite(vals.get("measured_seconds"))
    if measured is None:
        return _note("Time breakdown skipped: no measured seconds recorded.")
    emul = _finite(vals.get("emulation_seconds")) or 0.0
    modeled = _finite(vals.get("modeled_quantum_seconds")) or 0.0
    phases = vals.get("measured_by_phase") if isinstance(vals.get("measured_by_phase"),
                                                         dict) else None
    segs: list[tuple[str, float]] = []
    note = ""
    if phases:
        names = [p for p in PHASE_ORDER if p in phases] + [p for p in phases
                                                          if p not in PHASE_ORDER]
        vals_ph = {p: _finite(phases[p]) or 0.0 for p in names}
        # emulation happens inside the solve phase: carve it out so it is shown separately
        left = emul
        if "solve" in vals_ph:
            cut = min(left, vals_ph["solve"])
            vals_ph["solve"] -= cut
            left -= cut
        other = measured - sum(vals_ph.values()) - emul
        if other > 1e-9 * max(measured, 1.0):
            vals_ph["other (not in a phase)"] = other
        segs = [(f"{p} (excl. emulation)" if p == "solve" and emul > 0 else p, v)
                for p, v in vals_ph.items() if v > 0]
    else:
        segs = [("measured (no per-phase split)", max(measured - emul, 0.0))]
        note = _note(f"No per-phase times ({source} has no measured_by_phase): the measured bar "
                     "is one segment.")
    fig, ax = _fig(width=9, height=4.8)
    # measured phases in light colours, modeled seconds in dark hatched ones: never confusable
    pastel = matplotlib.colormaps["Pastel1" if len(segs) <= 9 else "Set3"]
    colors = [pastel(i % pastel.N) for i in range(len(segs))]
    labels = [f"{MEASURED.split(' (')[0]}\n(wall clock)", f"modeled\n(profile {hw})",
              "total\n(measured − emulation\n+ modeled)"]
    by_profile = vals.get("modeled_by_profile")
    if isinstance(by_profile, dict) and by_profile:
        model_segs = [(f"modeled quantum: {k}", _finite(v) or 0.0)
                      for k, v in by_profile.items()]
    else:
        model_segs = [(f"modeled quantum: {hw}", modeled)]
    bottom_m = bottom_t = 0.0
    for (name, v), c in zip(segs, colors, strict=True):
        ax.bar(0, v, bottom=bottom_m, color=c, label=f"measured: {name}")
        ax.bar(2, v, bottom=bottom_t, color=c)
        bottom_m += v
        bottom_t += v
    if emul > 0:
        ax.bar(0, emul, bottom=bottom_m, color="white", edgecolor="gray", hatch="//",
               label="measured: emulation of quantum solves (removed from total)")
        bottom_m += emul
    mcolors = ["#4b2a7b", "#7b2a4b", "#2a4b7b", "#2a7b4b"]
    bottom_q = 0.0
    for i, (name, v) in enumerate(model_segs):
        c = mcolors[i % len(mcolors)]
        ax.bar(1, v, bottom=bottom_q, color=c, hatch="..", edgecolor="white", label=name)
        ax.bar(2, v, bottom=bottom_t, color=c, hatch="..", edgecolor="white")
        bottom_q += v
        bottom_t += v
    ax.set_xticks([0, 1, 2], labels=labels, fontsize=8)
    top = max(bottom_m, bottom_q, bottom_t)
    if top > 0:
        ax.set_ylim(0, top * 1.1)
    ax.set_ylabel("seconds")
    ax.set_title("where the time goes: measured vs modeled vs total")
    for x, top in ((0, bottom_m), (1, bottom_q), (2, bottom_t)):
        ax.annotate(f"{top:.3g} s", (x, top), ha="center", va="bottom", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y")
    if bottom_q > 0 and bottom_m > 0 and math.log10(max(bottom_q, bottom_m) /
                                                    min(bottom_q, bottom_m)) > 2.5:
        note += _note("Measured and modeled seconds differ by orders of magnitude; the smaller "
                      "bar may look empty — see the summary table for the numbers.")
    cap = (f"left: measured wall clock by phase (emulation hatched); middle: modeled quantum "
           f"seconds (profile {hw}); right: total = measured − emulation + modeled. "
           f"Source: {source}.")
    return plots.save(fig, "time_breakdown.png", cap) + note


def _events_table(run: RunData, limit: int = 50) -> str:
    if not run.events:
        return "<p>No events recorded.</p>"
    rows = []
    for e in run.events[:limit]:
        extra = {k: v for k, v in e.items() if k not in ("step", "kind", "message")}
        rows.append([_fmt(e.get("step")), e.get("kind", ""), e.get("message", ""),
                     json.dumps(extra, default=str) if extra else ""])
    head = f"<p>{len(run.events)} event(s)"
    head += f"; the first {limit} are shown.</p>" if len(run.events) > limit else ".</p>"
    return head + _table(["step (0-based)", "kind", "message", "details"], rows)


# -- comparison report ------------------------------------------------------------------------
def _load_comparison(d: Path, notes: list[str]) -> dict[str, Any]:
    data = _read_json(d / "comparison.json", notes)
    if not isinstance(data, dict):
        raise ValueError(f"{d / 'comparison.json'} is not a JSON object")
    rows = data.get("rows")
    data["rows"] = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    return data


def _comparison_runs(d: Path, data: dict[str, Any], notes: list[str]
                     ) -> list[tuple[dict[str, Any], RunData | None]]:
    out = []
    for row in data["rows"]:
        rd = row.get("run_dir")
        run = None
        if rd:
            p = d / str(rd)
            if (p / "steps.jsonl").is_file():
                run = _load_run(p)
            else:
                notes.append(f"run directory {rd} of {row.get('label')} not found or has no "
                             "steps.jsonl: its curves are skipped.")
        else:
            notes.append(f"row {row.get('label')} names no run_dir: its curves are skipped.")
        out.append((row, run))
    return out


def _comparison_plots(d: Path, data: dict[str, Any], runs: list[tuple[dict, RunData | None]],
                      plots: Plots, main_only: bool = False) -> str:
    metric = data.get("metric") or "metric"
    target = _finite(data.get("target"))
    parts = []
    colors = _colors(len(runs))
    curves = [(row, run, c) for (row, run), c in zip(runs, colors, strict=True)
              if run is not None and run.evaluations()]
    if not curves:
        parts.append(_note("Metric curves skipped: no run directory with test evaluations."))
    else:
        key = f"test_{metric}"
        if not main_only:
            fig, ax = _fig()
            for row, run, c in curves:
                ev = [r for r in run.evaluations() if _finite(r.get(key)) is not None]
                ax.plot([r["step"] for r in ev], [_finite(r[key]) for r in ev], "o-", ms=3,
                        color=c, label=str(row.get("label")))
            if target is not None:
                ax.axhline(target, color="black", ls=":", lw=1, label=f"target {_fmt(target)}")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(f"test {metric}")
            ax.set_title(f"test {metric} vs step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            parts.append(plots.save(fig, "comparison_metric_step.png",
                                    f"test {metric} vs optimizer step, every run."))
        fig, (ax1, ax2) = _fig(2, width=11, height=4.4)
        all_t: list[float] = []
        for row, run, c in curves:
            ev = [r for r in run.evaluations() if _finite(r.get(key)) is not None]
            tot = [(_total_of(r), _finite(r[key])) for r in ev if _total_of(r) is not None]
            mea = [(_finite(r.get("measured_seconds")), _finite(r[key])) for r in ev
                   if _finite(r.get("measured_seconds")) is not None]
            all_t += [t for t, _ in tot] + [t for t, _ in mea]
            if tot:
                ax1.plot(*zip(*tot, strict=True), "o-", ms=3, color=c, label=str(row.get("label")))
            if mea:
                ax2.plot(*zip(*mea, strict=True), "s--", ms=3, color=c,
                         label=str(row.get("label")))
        logx = _spans_decades(all_t, 2)
        for ax, kind in ((ax1, "total seconds (measured − emulation + modeled)"),
                         (ax2, "measured seconds (wall clock)")):
            if target is not None:
                ax.axhline(target, color="black", ls=":", lw=1, label=f"target {_fmt(target)}")
            if logx:
                # symlog keeps the evaluation at 0 s (before training) visible
                ax.set_xscale("symlog", linthresh=min(t for t in all_t if t > 0))
                ax.set_xlim(left=0)  # times are never negative
            ax.set_xlabel(f"cumulative {kind}")
            ax.set_ylabel(f"test {metric}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax1.set_title(f"test {metric} vs total time")
        ax2.set_title(f"test {metric} vs measured time")
        parts.append(plots.save(fig, "comparison_metric_time.png",
                                f"left: test {metric} vs cumulative total seconds (modeled on each "
                                "run's own profile, see the hardware column); right: vs measured "
                                "wall clock."))
    # grouped bars
    rows = data["rows"]
    labels = [str(r.get("label", "?")) for r in rows]
    series = [("measured (wall clock)", "measured_seconds", CLASSICAL_COLOR),
              ("modeled quantum (run's profile)", "modeled_quantum_seconds", "#9467bd"),
              ("total (measured − emulation + modeled)", "total_seconds", QUANTUM_COLOR)]
    if rows:
        fig, ax = _fig(width=max(7.0, 1.4 * len(rows) + 3), height=4.6)
        x = np.arange(len(rows))
        w = 0.27
        allv: list[float] = []
        for i, (lab, key, c) in enumerate(series):
            v = [_finite(r.get(key)) or 0.0 for r in rows]
            allv += v
            ax.bar(x + (i - 1) * w, v, w, color=c, label=lab)
        if _spans_decades(allv, 2.5):
            ax.set_yscale("log")
        ax.set_xticks(x, labels=labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("seconds")
        ax.set_title("measured vs modeled vs total seconds per run")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
        parts.append(plots.save(fig, "comparison_times.png",
                                "per run: measured wall clock, modeled quantum seconds (each run's "
                                "own hardware profile) and total = measured − emulation + modeled "
                                "(three bars, not stacked)."))
    return "".join(parts)


def _comparison_table(data: dict[str, Any]) -> str:
    metric = data.get("metric") or "metric"
    rows = []
    for r in data["rows"]:
        rows.append([r.get("label", "?"), r.get("optimizer", "—"), r.get("hardware") or "—",
                     _fmt(r.get("final_metric")), _secs(r.get("measured_seconds")),
                     _secs(r.get("modeled_quantum_seconds")), _secs(r.get("total_seconds")),
                     _secs(r.get("time_to_target_total")), _secs(r.get("time_to_target_measured")),
                     _fmt(r.get("quantum_solves")), _fmt(r.get("classical_solves"))])
    return _table(["run", "optimizer", "hardware profile", f"final test {metric}",
                   "measured s (wall clock)", "modeled quantum s (row's profile)",
                   "total s (measured − emulation + modeled)", "time to target (total)",
                   "time to target (measured)", "quantum solves", "classical solves"], rows)


def _comparison_report(d: Path) -> tuple[str, str]:
    notes: list[str] = []
    data = _load_comparison(d, notes)
    runs = _comparison_runs(d, data, notes)
    plots = Plots(d)
    metric = data.get("metric") or "metric"
    target = data.get("target")
    parts = [_note(n) for n in notes]
    parts.append(_kv_table([("task", data.get("task", "—")), ("metric", metric),
                            ("target", _fmt(target) if target is not None else "none"),
                            ("runs", len(data["rows"]))]))
    parts.append("<h2>Runs</h2>" + _comparison_table(data))
    parts.append("<h2>Curves and times</h2>")
    parts.append(_comparison_plots(d, data, runs, plots))
    parts.append("<h2>Per-run reports</h2>")
    for row, run in runs:
        label = str(row.get("label", "?"))
        if run is None:
            parts.append(f"<details><summary>{_esc(label)}</summary>"
                         f"{_note('run directory not available')}</details>")
            continue
        sub = Plots(d, prefix=f"run_{_slug(label)}_")
        body = _run_body(run, sub, level=3)
        parts.append(f"<details><summary>{_esc(label)} — <code>{_esc(row.get('run_dir'))}</code>"
                     f"</summary>{body}</details>")
    return f"qnewton comparison report — {data.get('task', d.name)}", "".join(parts)


# -- sweep report -----------------------------------------------------------------------------
def _load_sweep(d: Path, notes: list[str]) -> dict[str, Any]:
    data = _read_json(d / "sweep.json", notes)
    if not isinstance(data, dict):
        raise ValueError(f"{d / 'sweep.json'} is not a JSON object")
    rows = data.get("rows")
    rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    rows = [r for r in rows if _finite(r.get("value")) is not None]
    rows.sort(key=lambda r: _finite(r["value"]))
    data["rows"] = rows
    return data


def find_crossovers(values: Sequence[float], totals: Sequence[float], baseline: float
                    ) -> list[float]:
    """Values where ``totals`` crosses ``baseline`` (log-log interpolation between neighbours).

    Points exactly on the baseline are crossovers themselves. Values must be sorted ascending.
    Interpolation is linear in (log value, log total) when everything is positive, else linear.
    """
    out: list[float] = []
    pts = [(v, t) for v, t in zip(values, totals, strict=True)
           if v is not None and t is not None and math.isfinite(v) and math.isfinite(t)]
    for i, (v, t) in enumerate(pts):
        if t == baseline:
            out.append(v)
            continue
        if i + 1 >= len(pts):
            break
        v2, t2 = pts[i + 1]
        if t2 == baseline or (t - baseline) * (t2 - baseline) > 0:
            continue
        if min(v, v2, t, t2, baseline) > 0:
            lv, lv2, lt, lt2, lb = (math.log(x) for x in (v, v2, t, t2, baseline))
            out.append(math.exp(lv + (lb - lt) * (lv2 - lv) / (lt2 - lt)))
        else:
            out.append(v + (baseline - t) * (v2 - v) / (t2 - t))
    return out


def _share(row: dict[str, Any]) -> float | None:
    q = _finite(row.get("quantum_solves")) or 0.0
    c = _finite(row.get("classical_solves")) or 0.0
    return q / (q + c) if q + c > 0 else None


def _sweep_parts(d: Path, data: dict[str, Any], plots: Plots) -> tuple[str, str]:
    """(plots html, crossover html) of a sweep."""
    param = str(data.get("param", "value"))
    metric = data.get("metric") or "metric"
    rows = data["rows"]
    base = data.get("baseline") if isinstance(data.get("baseline"), dict) else None
    base_total = _finite(base.get("total_seconds")) if base else None
    base_metric = _finite(base.get("final_metric")) if base else None
    base_label = str(base.get("label", "baseline")) if base else "baseline"
    gate = param == "gate-time"
    xlabel = "gate time (s)" if gate else param
    vals = [_finite(r["value"]) for r in rows]
    logx = _spans_decades(vals, 1.5) and all(v > 0 for v in vals)
    parts: list[str] = []
    cross_html = ""
    if not rows:
        return _note("sweep.json has no rows with a numeric value: nothing to plot."), ""
    # metric vs value
    mv = [(_finite(r["value"]), _finite(r.get("final_metric"))) for r in rows]
    mv = [p for p in mv if p[1] is not None]
    if mv:
        fig, ax = _fig()
        ax.plot(*zip(*mv, strict=True), "o-", color="#2ca02c", label=f"{data.get('optimizer')}")
        if base_metric is not None:
            ax.axhline(base_metric, color="black", ls="--", lw=1,
                       label=f"{base_label} (classical baseline)")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"final test {metric}")
        ax.set_title(f"final test {metric} vs {param}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        parts.append(plots.save(fig, "sweep_metric.png", f"final test {metric} vs {param}."))
    else:
        parts.append(_note("Metric plot skipped: no row has a final_metric."))
    # times vs value
    fig, ax = _fig()
    series = (("measured (wall clock)", "measured_seconds", CLASSICAL_COLOR, "s--"),
              ("modeled quantum (sweep's profile)", "modeled_quantum_seconds", "#9467bd", "^:"),
              ("total (measured − emulation + modeled)", "total_seconds", QUANTUM_COLOR, "o-"))
    allv = [t for r in rows for _, key, _, _ in series
            if (t := _finite(r.get(key))) is not None]
    if base_total is not None:
        allv.append(base_total)
    logy = _spans_decades(allv, 2)
    hidden = 0
    for lab, key, c, m in series:
        pts = [(_finite(r["value"]), _finite(r.get(key))) for r in rows]
        pts = [p for p in pts if p[1] is not None]
        if logy:
            hidden += sum(1 for p in pts if p[1] <= 0)
            pts = [p for p in pts if p[1] > 0]
        if pts:
            ax.plot(*zip(*pts, strict=True), m, label=lab, color=c)
    if base_total is not None:
        ax.axhline(base_total, color="black", ls="--", lw=1,
                   label=f"{base_label}: total seconds (classical baseline)")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds")
    ax.set_title(f"time vs {param}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    cap = (f"measured, modeled and total seconds of each run vs {param} (the modeled times use "
           "the profile the sweep ran on).")
    if hidden:
        cap += f" Log y axis: {hidden} zero value(s) not shown."
    parts.append(plots.save(fig, "sweep_times.png", cap))
    # gate-time: crossover plot
    if gate:
        tv = [(_finite(r["value"]), _finite(r.get("total_seconds"))) for r in rows]
        tv = [p for p in tv if p[1] is not None]
        if base_total is None:
            cross_html = _note("No classical baseline in sweep.json: crossover not computed.")
        elif not tv:
            cross_html = _note("No total_seconds in the sweep rows: crossover not computed.")
        else:
            crossings = find_crossovers([v for v, _ in tv], [t for _, t in tv], base_total)
            below = [v for v, t in tv if t < base_total]
            if crossings:
                cross_html = (
                    "<p class='legend'><b>Crossover gate time ≈ "
                    + ", ".join(f"<span class='crossover'>{c:.3e}</span>" for c in crossings)
                    + f" s</b>: the sweep's total seconds (measured − emulation + modeled) fall "
                    f"below the classical baseline {_esc(base_label)} "
                    f"({_secs(base_total)} total) for gate times "
                    f"{'below' if tv[0][1] < base_total else 'above'} this value "
                    "(log-log interpolation between neighbouring swept values).</p>")
            elif below:
                cross_html = _note(
                    f"No crossover in the swept range: total seconds are below the baseline "
                    f"({_secs(base_total)}) at every swept gate time.")
            else:
                cross_html = _note(
                    f"No crossover in the swept range: total seconds stay above the baseline "
                    f"({_secs(base_total)}) at every swept gate time "
                    f"({_fmt(tv[0][0])} … {_fmt(tv[-1][0])} s).")
            fig, ax = _fig()
            ax.loglog(*zip(*[p for p in tv if p[0] > 0 and p[1] > 0], strict=True), "o-",
                      color=QUANTUM_COLOR, label=f"{data.get('optimizer')}: total seconds")
            ax.axhline(base_total, color="black", ls="--", lw=1,
                       label=f"{base_label}: total seconds (classical baseline)")
            for c in crossings:
                ax.axvline(c, color="#2ca02c", ls=":", lw=1.2)
                ax.plot([c], [base_total], "*", color="#2ca02c", ms=14,
                        label=f"crossover ≈ {c:.3g} s")
            ax.set_xlabel("gate time (s)")
            ax.set_ylabel("total seconds (measured − emulation + modeled)")
            ax.set_title("total training time vs gate time")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
            parts.append(plots.save(fig, "sweep_crossover.png",
                                    "log-log total seconds vs gate time; dashed: classical "
                                    "baseline; star: crossover."))
    # quantum share
    sh = [(_finite(r["value"]), _share(r)) for r in rows]
    sh = [p for p in sh if p[1] is not None]
    if sh:
        fig, ax = _fig()
        ax.plot(*zip(*sh, strict=True), "o-", color="#9467bd")
        if logx:
            ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("quantum share of solves")
        ax.set_title(f"share of block solves routed quantum vs {param}")
        ax.grid(alpha=0.3, which="both")
        parts.append(plots.save(fig, "sweep_quantum_share.png",
                                f"quantum solves / (quantum + classical solves) vs {param}."))
    else:
        parts.append(_note("Quantum-share plot skipped: no row has any solves recorded."))
    return "".join(parts), cross_html


def _sweep_table(data: dict[str, Any]) -> str:
    metric = data.get("metric") or "metric"
    rows = []
    for r in data["rows"]:
        share = _share(r)
        rows.append([_fmt(r.get("value")), _fmt(r.get("final_metric")),
                     _secs(r.get("measured_seconds")), _secs(r.get("modeled_quantum_seconds")),
                     _secs(r.get("total_seconds")), _fmt(r.get("quantum_solves")),
                     _fmt(r.get("classical_solves")),
                     "—" if share is None else f"{100 * share:.1f}%", r.get("run_dir") or "—"])
    return _table([str(data.get("param", "value")), f"final test {metric}",
                   "measured s (wall clock)", "modeled quantum s", "total s (measured − "
                   "emulation + modeled)", "quantum solves", "classical solves", "quantum share",
                   "run dir"], rows)


def _sweep_report(d: Path) -> tuple[str, str]:
    notes: list[str] = []
    data = _load_sweep(d, notes)
    base = data.get("baseline") if isinstance(data.get("baseline"), dict) else None
    parts = [_note(n) for n in notes]
    parts.append(_kv_table([
        ("task", data.get("task", "—")), ("swept parameter", data.get("param", "—")),
        ("optimizer", data.get("optimizer", "—")), ("metric", data.get("metric", "—")),
        ("values", ", ".join(_fmt(v) for v in data.get("values", []) or [])),
        ("classical baseline", "none" if base is None else
         f"{base.get('label', 'baseline')}: total {_secs(base.get('total_seconds'))}, final "
         f"metric {_fmt(base.get('final_metric'))}"),
    ]))
    plots_html, cross_html = _sweep_parts(d, data, Plots(d))
    if cross_html:
        parts.append("<h2>Crossover</h2>" + cross_html)
    parts.append("<h2>Rows</h2>" + _sweep_table(data))
    parts.append("<h2>Plots</h2>" + plots_html)
    return f"qnewton sweep report — {data.get('param', '?')} on {data.get('task', d.name)}", \
        "".join(parts)


# -- reproduce report -------------------------------------------------------------------------
def _verdict(v: Any) -> str:
    s = str(v or "n/a")
    cls = {"supported": "supported", "not supported": "not-supported",
           "partly": "partly"}.get(s.lower(), "")
    return f"<span class='{cls}'>{_esc(s)}</span>" if cls else _esc(s)


def _reproduce_report(d: Path) -> tuple[str, str]:
    notes: list[str] = []
    data = _read_json(d / "claims.json", notes)
    if not isinstance(data, dict):
        raise ValueError(f"{d / 'claims.json'} is not a JSON object")
    claims = [c for c in data.get("claims", []) or [] if isinstance(c, dict)]
    parts = [_note(n) for n in notes]
    counts: dict[str, int] = {}
    for c in claims:
        counts[str(c.get("verdict", "n/a"))] = counts.get(str(c.get("verdict", "n/a")), 0) + 1
    parts.append("<h2>Claims</h2>")
    parts.append("<p>" + (", ".join(f"{k}: {v}" for k, v in counts.items()) or "no claims")
                 + "</p>")
    rows = [[_esc(c.get("claim", "")), _esc(c.get("paper", "")), _esc(c.get("profile", "")),
             _esc(c.get("ours", "")), _verdict(c.get("verdict")), _esc(c.get("details", ""))]
            for c in claims]
    parts.append(_table(["claim", "paper says", "profile (modeled times)", "ours", "verdict",
                         "details"], rows, raw=True))
    for group, fname in (("comparisons", "comparison.json"), ("sweeps", "sweep.json")):
        subs = [s for s in data.get(group, []) or [] if isinstance(s, str)]
        if not subs:
            continue
        parts.append(f"<h2>{group.capitalize()}</h2>")
        for rel in subs:
            sub_dir = d / rel
            parts.append(f"<h3>{_esc(rel)}</h3>")
            if not (sub_dir / fname).is_file():
                parts.append(_note(f"{rel}: no {fname} there; its plots are skipped."))
                continue
            plots = Plots(d, prefix=f"{_slug(rel)}_")
            sub_notes: list[str] = []
            try:
                if group == "comparisons":
                    cdata = _load_comparison(sub_dir, sub_notes)
                    runs = _comparison_runs(sub_dir, cdata, sub_notes)
                    body = _comparison_table(cdata) + _comparison_plots(
                        sub_dir, cdata, runs, plots, main_only=True)
                else:
                    sdata = _load_sweep(sub_dir, sub_notes)
                    plots_html, cross_html = _sweep_parts(sub_dir, sdata, plots)
                    body = cross_html + _sweep_table(sdata) + plots_html
            except (ValueError, OSError) as exc:
                parts.append(_note(f"{rel}: could not be read ({exc})."))
                continue
            if (sub_dir / REPORT_NAME).is_file():
                body = (f"<p>Full report: <code>{_esc(rel)}/{REPORT_NAME}</code>"
                        "</p>") + body
            parts.append("".join(_note(n) for n in sub_notes) + body)
    return "qnewton reproduction report", "".join(parts)
