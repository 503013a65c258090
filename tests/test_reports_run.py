"""Run reports: the summary, the registered plots, and what a killed or damaged run shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from reports_fixtures import (
    RUN_PNGS,
    assert_png,
    assert_self_contained,
    kv_value,
    make_first_order_run,
    make_newton_run,
    newton_solves,
    notes,
    read_html,
    row_starting,
    run_config,
    solve_row,
    steps_rows,
    warnings,
    write_json,
    write_jsonl,
)

import qnewton.reports.run as run_module
from qnewton.registry import Registry
from qnewton.reports import detect_kind, write_report
from qnewton.reports.figures import new_figure
from qnewton.reports.run_plots import HESSIAN_BLOCKS, RUN_PLOTS, TRAINING_CURVES, RunPlot

MEASURED_ROW = "measured (wall clock, this machine) seconds"
MODELED_ROW = "modeled quantum seconds (profile paper)"
TOTAL_ROW = "total (= measured − emulation + modeled) seconds (profile paper)"


def test_newton_run_report(tmp_path):
    d = make_newton_run(tmp_path / "run")
    assert detect_kind(d) == "run"
    out = write_report(d)
    assert out == d / "report.html"
    text = read_html(out)
    assert_self_contained(text)
    assert warnings(text) == []  # the fixture's files agree with each other
    for name in RUN_PNGS:
        assert_png(d / name)
    # one embedded image per registered plot, each written once
    assert text.count("data:image/png;base64,") == len(RUN_PLOTS) == len(RUN_PNGS)
    # summary.json's values, each under its clock's label
    assert kv_value(text, MEASURED_ROW) == "3 s"
    assert kv_value(text, "emulation seconds (measured; part of measured)") == "0.6 s"
    assert kv_value(text, MODELED_ROW) == "0.12 s"
    assert kv_value(text, TOTAL_ROW) == "2.52 s"
    assert kv_value(text, "final test accuracy") == "0.94"
    # the inf κ is parsed, not plotted, and reported
    assert "1 κ estimate(s) not finite or not positive: not plotted." in notes(text)
    # routing caption counts quantum vs classical and the fallbacks
    assert "(4 quantum, 8 classical); fallbacks marked: 1 retry, 1 gradient." in text
    # per-block table: 0.weight went quantum from step 2 on (4 of 6) with one retry
    block, solves, quantum, classical, fallbacks, *_ = row_starting(text, "0.weight")
    assert (solves, quantum, classical, fallbacks) == ("6", "4", "2", "1")
    # events are escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert" not in text
    assert not any("No exact κ recorded" in n for n in notes(text))


def test_first_order_run_has_no_solve_plots(tmp_path):
    d = make_first_order_run(tmp_path / "adam")
    text = read_html(write_report(d))
    assert_self_contained(text)
    for name in ("loss.png", "metric_time.png", "time_breakdown.png"):
        assert_png(d / name)
    for name in ("kappa.png", "sparsity.png", "routing.png"):
        assert not (d / name).exists()
    assert ("No Hessian solves recorded (solves.jsonl empty or absent; optimizer adam): κ, "
            "sparsity and routing plots skipped.") in notes(text)
    assert "No events recorded" in text
    assert kv_value(text, "modeled quantum seconds (profile none)") == "0 s"


def test_killed_run_drops_torn_last_line_with_a_note(tmp_path):
    d = make_newton_run(tmp_path / "killed", with_summary=False)
    # a torn last line, as left by a process killed mid-write
    with (d / "steps.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"step": 7, "epoch": 2, "loss": 0.2, "meas')
    text = read_html(write_report(d))
    assert_self_contained(text)
    assert warnings(text) == [
        "summary.json is missing: the run was killed before it finished, or is still running. "
        "The final figures come from the last row of steps.jsonl (step 6); per-phase times are "
        "not available.",
        "steps.jsonl: last line was cut short (run killed mid-write?); ignored"]
    assert kv_value(text, "status") == "unknown (summary.json missing)"
    # the last complete row (step 6): measured 3 s, emulation 0.6, modeled 0.12 -> total 2.52
    assert kv_value(text, "steps") == "6"
    assert kv_value(text, MEASURED_ROW) == "3 s"
    assert kv_value(text, TOTAL_ROW) == "2.52 s"
    assert kv_value(text, "final test accuracy (evaluated at step 6)") == "0.94"
    assert any(n.startswith("No per-phase times") for n in notes(text))
    for name in RUN_PNGS:
        assert_png(d / name)


def test_torn_last_line_of_solves_keeps_the_other_solves(tmp_path):
    d = make_newton_run(tmp_path / "killed")
    with (d / "solves.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"step": 6, "block": "0.wei')
    text = read_html(write_report(d))
    assert warnings(text) == [
        "solves.jsonl: last line was cut short (run killed mid-write?); ignored"]
    assert "(4 quantum, 8 classical)" in text  # the 12 complete solves, not 13
    assert_png(d / "routing.png")


def _corrupt_middle_line(path: Path, garbage: str = "{not json") -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(2, garbage)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_corrupt_middle_line_of_steps_is_a_note_naming_the_file(tmp_path):
    d = make_newton_run(tmp_path / "corrupt", with_summary=False)
    _corrupt_middle_line(d / "steps.jsonl")
    text = read_html(write_report(d))
    missing, problem = warnings(text)
    assert missing == ("summary.json is missing: the run was killed before it finished, or is "
                       "still running. The final figures are unknown: steps.jsonl is unreadable "
                       "too.")
    assert str(d / "steps.jsonl") in problem and "line 3 is not valid JSON" in problem
    assert "not shown in this report" in problem
    # steps.jsonl's data is unavailable: nothing over training, and no claim it is merely empty
    assert not (d / "loss.png").exists() and not (d / "metric_time.png").exists()
    assert not any(n.startswith("steps.jsonl has no rows yet") for n in notes(text))
    # the other files still report
    assert_png(d / "kappa.png")
    assert "residual too large; retried classically" in text


def test_corrupt_solves_and_events_are_notes_not_crashes(tmp_path):
    d = make_newton_run(tmp_path / "corrupt")
    _corrupt_middle_line(d / "solves.jsonl")
    (d / "events.jsonl").write_text('[1, 2]\n{"step": 1, "kind": "retry"}\n', encoding="utf-8")
    text = read_html(write_report(d))
    solves, events = warnings(text)
    assert str(d / "solves.jsonl") in solves and "line 3 is not valid JSON" in solves
    assert str(d / "events.jsonl") in events and "line 1 is not a JSON object" in events
    assert any(n.startswith("No Hessian solves recorded (solves.jsonl unreadable")
               for n in notes(text))
    assert "Events not shown: events.jsonl is unreadable" in text
    assert not (d / "kappa.png").exists()
    assert_png(d / "loss.png")
    assert kv_value(text, TOTAL_ROW) == "2.52 s"  # summary.json is fine


def test_corrupt_summary_falls_back_to_steps_with_a_note(tmp_path):
    d = make_newton_run(tmp_path / "corrupt")
    (d / "summary.json").write_text('{"status": "compl', encoding="utf-8")
    text = read_html(write_report(d))
    # one clear statement: the file is corrupt, where the figures come from instead
    [problem] = warnings(text)
    assert problem.startswith(f"{d / 'summary.json'}: summary.json is not valid JSON (")
    assert problem.endswith("; restore it from a copy or start a new run. The final figures "
                            "come from the last row of steps.jsonl (step 6); per-phase times "
                            "are not available.")
    page_text = " ".join(notes(text) + warnings(text)) + kv_value(text, "status")
    assert "missing" not in page_text
    assert kv_value(text, "status") == "unknown (summary.json unreadable)"
    assert kv_value(text, "final test accuracy (evaluated at step 6)") == "0.94"


def test_missing_optional_data_is_reported_not_crashed(tmp_path):
    d = tmp_path / "sparse"
    write_json(d / "config.json", run_config("newton", "surface-code"))
    write_jsonl(d / "steps.jsonl", steps_rows(4, newton=True, eval_at=()))
    solves = [solve_row(s, "0.weight", "classical") for s in range(4)]
    for s in solves:
        del s["kappa_exact"]
    write_jsonl(d / "solves.jsonl", solves)
    # no events.jsonl, no summary.json
    text = read_html(write_report(d))
    assert ("No exact κ recorded (kappa_exact absent or null): only estimates shown."
            in notes(text))
    assert any(n.startswith("Metric-vs-time plot skipped") for n in notes(text))
    assert any(n.startswith("No test evaluation rows") for n in notes(text))
    assert not (d / "metric_time.png").exists()
    for name in ("loss.png", "kappa.png", "sparsity.png", "routing.png", "time_breakdown.png"):
        assert_png(d / name)
    assert kv_value(text, "hardware profile (for modeled times)") == "surface-code"


def test_perplexity_run(tmp_path):
    d = tmp_path / "lm"
    write_json(d / "config.json", run_config("qnewton", "paper"))
    write_jsonl(d / "steps.jsonl", steps_rows(6, newton=True, metric="perplexity"))
    write_jsonl(d / "solves.jsonl", newton_solves())
    text = read_html(write_report(d))
    # the last evaluation is at step 6: 50 / (1 + 6)
    assert kv_value(text, "final test perplexity (evaluated at step 6)") == "7.143"
    assert_png(d / "metric_time.png")


def test_run_with_empty_steps_and_rows_without_step(tmp_path):
    d = tmp_path / "fresh"
    write_json(d / "config.json", run_config("qnewton", "paper"))
    (d / "steps.jsonl").write_text('\n{"epoch": 0}\n', encoding="utf-8")
    write_jsonl(d / "solves.jsonl", [{"block": "0.weight", "choice": "quantum"}])
    text = read_html(write_report(d))
    page_notes = notes(text)
    assert warnings(text) == [
        "summary.json is missing: the run was killed before it finished, or is still running. "
        "The final figures are unknown: steps.jsonl has no rows either.",
        "steps.jsonl: 1 row(s) without a step number ignored."]
    assert "steps.jsonl has no rows yet: nothing to plot over training." in page_notes
    assert any(n.startswith("Loss/metric plot skipped") for n in page_notes)
    assert any(n.startswith("Time breakdown skipped") for n in page_notes)
    assert any(n.startswith("κ plot skipped") for n in page_notes)
    assert any(n.startswith("Routing plot skipped") for n in page_notes)
    assert not list(d.glob("*.png"))


# -- the plot registry ------------------------------------------------------------------------
def _plot_solve_count(run_data, plots) -> str:
    fig, ax = new_figure()
    ax.bar([0], [len(run_data.solves)])
    return plots.save(fig, "solve_count.png", f"{len(run_data.solves)} solves in all.")


def _registry_with(name: str, plot: RunPlot) -> Registry[RunPlot]:
    extended: Registry[RunPlot] = Registry("run plot")
    for existing, entry in RUN_PLOTS.items():
        extended.register(existing, entry)
    extended.register(name, plot)
    return extended


def test_a_registered_plot_appears_in_the_run_report(tmp_path, monkeypatch):
    plot = RunPlot(TRAINING_CURVES, "solve count", _plot_solve_count)
    monkeypatch.setattr(run_module, "RUN_PLOTS", _registry_with("solve_count", plot))
    d = make_newton_run(tmp_path / "run")
    text = read_html(write_report(d))
    assert_png(d / "solve_count.png")
    assert "solve_count.png: 12 solves in all." in text
    assert text.count("data:image/png;base64,") == len(RUN_PNGS) + 1
    # drawn in its section, after the section's earlier entries
    assert (text.index("<h2>Training curves</h2>") < text.index("metric_time.png:")
            < text.index("solve_count.png:") < text.index("<h2>Hessian blocks</h2>"))


def test_skipped_solve_plots_are_named_from_the_registry(tmp_path, monkeypatch):
    plot = RunPlot(HESSIAN_BLOCKS, "solve count", _plot_solve_count)
    monkeypatch.setattr(run_module, "RUN_PLOTS", _registry_with("solve_count", plot))
    d = make_first_order_run(tmp_path / "adam")
    text = read_html(write_report(d))
    assert ("No Hessian solves recorded (solves.jsonl empty or absent; optimizer adam): κ, "
            "sparsity, routing and solve count plots skipped.") in notes(text)
    assert not (d / "solve_count.png").exists()


def test_run_plot_names_are_checked():
    with pytest.raises(ValueError, match="run plot must be one of loss, metric_time"):
        RUN_PLOTS["no-such-plot"]
    with pytest.raises(ValueError, match="already registered"):
        RUN_PLOTS.register("loss", RUN_PLOTS["loss"])


class CapturedPlots:
    """A :class:`~qnewton.reports.figures.Plots` stand-in that keeps each figure and caption."""

    def __init__(self) -> None:
        self.figures: dict[str, tuple[object, str]] = {}

    def save(self, fig, name, caption):
        self.figures[name] = (fig, caption)
        return caption


def _loaded(d):
    from qnewton.reports.reading import load_run

    return load_run(d)


def test_a_dense_run_s_sparsity_figure_has_one_panel_and_says_why(tmp_path):
    from qnewton.reports.run_plots.sparsity import plot_sparsity

    d = make_newton_run(tmp_path / "run")
    rows = [dict(r, d=r["n"]) for r in newton_solves()]  # every block solved dense: d = N
    write_jsonl(d / "solves.jsonl", rows)
    plots = CapturedPlots()
    plot_sparsity(_loaded(d), plots)
    fig, caption = plots.figures["sparsity.png"]
    assert len(fig.axes) == 1 and "one panel shows both" in caption
    # a sparse block (d < N) gets both panels
    plots = CapturedPlots()
    plot_sparsity(_loaded(make_newton_run(tmp_path / "sparse")), plots)
    fig, caption = plots.figures["sparsity.png"]
    assert len(fig.axes) == 2 and "row sparsity d (left)" in caption


@pytest.mark.parametrize("modeled, small", [(1e-4, "modeled"), (1e4, "measured")])
def test_the_time_breakdown_caption_names_the_clock_its_figure_hides(tmp_path, modeled, small):
    from qnewton.reports.run_plots.time_breakdown import plot_time_breakdown

    d = make_newton_run(tmp_path / "run")
    run = _loaded(d)
    vals, _ = run.final_values()
    vals.update(modeled_quantum_seconds=modeled, modeled_by_profile={"paper": modeled})
    plots = CapturedPlots()
    plot_time_breakdown(run, plots)
    fig, caption = plots.figures["time_breakdown.png"]
    kept = vals["measured_seconds"] - vals["emulation_seconds"]
    assert f"in the total the {small} part is too thin to see" in caption
    assert f"({kept:.3g} s)" in caption and f"({modeled:.3g} s)" in caption
    # the figure's bars carry the same numbers as the caption
    heights = {round(p.get_height(), 12) for ax in fig.axes for p in ax.patches}
    assert round(modeled, 12) in heights


def test_the_summary_shows_the_settings_a_default_resolved_to(tmp_path):
    d = make_newton_run(tmp_path / "run")
    cfg = run_config("qnewton", "paper")
    cfg["config"].update(batch_size=None, policy=None, readout=None)
    write_json(d / "config.json", cfg)
    text = read_html(write_report(d))
    assert kv_value(text, "config: batch_size").startswith("128 (the digits task's default)")
    assert kv_value(text, "config: policy") == "cost (the qnewton optimizer's default)"
    assert "the profile's default" in kv_value(text, "config: readout")
    assert "—" not in kv_value(text, "config: batch_size")
@pytest.mark.parametrize(("hardware", "labelled"), [("paper", True), ("surface-code", False)])
def test_run_summary_and_report_label_the_papers_hypothesis(tmp_path, capsys, hardware, labelled):
    import json

    from qnewton.cli import main

    out = tmp_path / hardware
    assert main(["train", "--task", "digits", "--tiny", "--max-steps", "1", "--no-progress",
                 "--hardware", hardware, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hardware"] == hardware
    assert ("PAPER'S HYPOTHESIS" in summary["hardware_label"]) is labelled
    assert ("PAPER'S HYPOTHESIS" in summary["time_labels"]["modeled_quantum_seconds"]) is labelled
    assert ("PAPER'S HYPOTHESIS" in printed) is labelled
    write_report(out)
    html = (out / "report.html").read_text()
    assert ("THE PAPER&#x27;S HYPOTHESIS" in html) is labelled
