"""Integrity warnings on damaged run directories, the run headline, and `qnewton report`'s exit
codes and messages. Ground truth: the numbers the tests cut, and the files they wrote."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from reports_fixtures import (
    LONG_BLOCKS,
    LONG_PHASES,
    LONG_RATIOS,
    drop_lines,
    headline,
    keep_lines,
    make_first_order_run,
    make_long_run,
    make_newton_run,
    read_html,
    solve_row,
    update_json,
    warnings,
)

from qnewton.cli import main
from qnewton.reports import make_report
from qnewton.reports.headline import fmt_ratio, routing_reason
from qnewton.reports.integrity import ranges

STEPS = 120  # make_long_run: 121 rows in steps.jsonl (step 0 + 120 steps), 6 solves per step


def report(d: Path, capsys) -> tuple[int, list[str], list[str]]:
    """Run ``qnewton report d``: exit code, stdout lines, stderr lines."""
    code = main(["report", str(d)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


# -- integrity of a run -----------------------------------------------------------------------
def test_an_intact_run_has_no_warnings(tmp_path, capsys):
    d = make_long_run(tmp_path / "run")
    code, out, err = report(d, capsys)
    assert (code, out, err) == (0, [f"report written to {d / 'report.html'}"], [])
    assert warnings(read_html(d / "report.html")) == []
    assert make_report(make_newton_run(tmp_path / "newton")).warnings == ()
    assert make_report(make_first_order_run(tmp_path / "adam")).warnings == ()


def test_steps_cut_short_while_the_summary_says_120(tmp_path, capsys):
    d = make_long_run(tmp_path / "run")
    keep_lines(d / "steps.jsonl", 17)  # 121 rows -> 17: steps 0..16
    expected = ("steps.jsonl has 17 row(s) ending at step 16, but summary.json says the run "
                "took 120 steps: the rows for steps 17–120 are missing (the file was cut short "
                "or overwritten). The curves stop at step 16; the final figures come from "
                "summary.json.")
    code, out, err = report(d, capsys)
    assert code == 0
    assert err == [f"qnewton report: warning: {expected}"]
    assert out[-1] == f"report written to {d / 'report.html'} (1 warning, see above)"
    text = read_html(d / "report.html")
    assert warnings(text) == [expected]
    # the warnings come first on the page, before the headline and the summary
    assert text.index("integrity warning") < text.index("class='headline'") < text.index(
        "<h2>Summary</h2>")


def test_solves_with_fewer_steps_than_the_summary(tmp_path, capsys):
    d = make_long_run(tmp_path / "run")
    keep_lines(d / "solves.jsonl", 6 * 17)  # 720 solves -> the 102 of steps 1..17
    keep_lines(d / "steps.jsonl", 17)
    code, out, err = report(d, capsys)
    assert code == 0
    assert out[-1] == f"report written to {d / 'report.html'} (2 warnings, see above)"
    assert err[1] == (
        "qnewton report: warning: solves.jsonl holds 102 solve(s) (0 quantum, 102 classical) "
        "covering steps 1–17, but summary.json counts 720 (0 quantum, 720 classical) over 120 "
        "steps: 618 solve record(s) are missing (the file was cut short or overwritten). The "
        "Hessian plots, the per-block table and the routing headline use only the solves in "
        "the file.")
    # the headline's final figures come from summary.json; its routing from the solves it read
    lines = headline(read_html(d / "report.html"))
    summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
    assert lines[0] == (f"Test accuracy went from 0.1 before training to "
                        f"{summary['test_accuracy']:.3g} after 120 steps.")
    assert lines[-1].startswith("0 of 102 solves went quantum")


def test_steps_with_a_gap_repeats_and_rows_beyond_the_summary(tmp_path):
    d = make_long_run(tmp_path / "run")
    drop_lines(d / "steps.jsonl", range(51, 61))  # lines 51..60 hold steps 50..59
    lines = (d / "steps.jsonl").read_text(encoding="utf-8").splitlines()
    extra = json.loads(lines[-1]) | {"step": 121}
    with (d / "steps.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(lines[-2] + "\n" + json.dumps(extra) + "\n")  # step 119 again, then 121
    assert make_report(d).warnings == (
        "steps.jsonl has more than one row for step(s) 119 (rows of two runs mixed, or a resume "
        "that did not truncate the file); the curves show every row.",
        "steps.jsonl lacks the rows for step(s) 50–59 of the 121 it should hold (step 0 before "
        "training, then steps 1–120 as summary.json says): the curves have gaps there.",
        "steps.jsonl has rows for step(s) 121, outside the 0–120 summary.json reports (rows of "
        "another run appended, or a stale summary.json).")


def test_gaps_without_a_summary_and_solves_against_the_last_steps_row(tmp_path):
    d = make_long_run(tmp_path / "run")
    (d / "summary.json").unlink()
    drop_lines(d / "steps.jsonl", [4, 5, 9])  # steps 3, 4 and 8
    with (d / "solves.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(solve_row(120, "fc1.weight", "quantum")) + "\n")
    assert make_report(d).warnings == (
        "summary.json is missing: the run was killed before it finished, or is still running. "
        "The final figures come from the last row of steps.jsonl (step 120); per-phase times "
        "are not available.",
        "steps.jsonl skips step(s) 3–4, 8: rows are missing in the middle of the file.",
        "solves.jsonl holds 721 solve(s) (1 quantum, 720 classical) covering steps 1–121, but "
        "the last row of steps.jsonl (step 120) counts 720 (0 quantum, 720 classical) over 120 "
        "steps: 1 more record(s) than counted (records of another run appended, or steps.jsonl "
        "cut short). The Hessian plots, the per-block table and the routing headline use only "
        "the solves in the file.")


def test_summary_that_disagrees_with_itself_and_with_the_steps(tmp_path):
    d = make_long_run(tmp_path / "run")
    update_json(d / "summary.json", total_seconds=99.0, classical_solves=700)
    measured = sum(LONG_PHASES.values())
    assert make_report(d).warnings == (
        "solves.jsonl holds 720 solve(s) (0 quantum, 720 classical) covering steps 1–120, but "
        "summary.json counts 700 (0 quantum, 700 classical) over 120 steps: 20 more record(s) "
        "than counted (records of another run appended, or a stale summary.json). The Hessian "
        "plots, the per-block table and the routing headline use only the solves in the file.",
        f"summary.json: total_seconds is 99 but measured − emulation + modeled = {measured:g} − "
        f"0 + 0 = {measured:g}; the file was edited or written by another version.",
        f"the last row of steps.jsonl (step 120) and summary.json disagree: total_seconds "
        f"{measured:g} vs 99; classical_solves 720 vs 700 (steps.jsonl vs summary.json). The two "
        "files come from different runs, or one was edited; the summary table shows "
        "summary.json.")


def test_corrupt_summary_is_one_clear_warning(tmp_path, capsys):
    d = make_long_run(tmp_path / "run")
    (d / "summary.json").write_text('{"status": "compl', encoding="utf-8")
    code, out, err = report(d, capsys)
    assert code == 0 and len(err) == 1
    assert err[0].startswith(f"qnewton report: warning: {d / 'summary.json'}: summary.json is "
                             "not valid JSON (")
    assert err[0].endswith("The final figures come from the last row of steps.jsonl (step 120); "
                           "per-phase times are not available.")
    assert "missing" not in err[0]
    assert out[-1].endswith("(1 warning, see above)")


def test_an_interrupted_run_may_lack_the_rows_of_its_last_step(tmp_path):
    """Stopped between counting step 120 and writing it: its steps row and its 6 solves are
    missing, which is what an interrupt leaves, not damage; the same files from a completed
    run are damage."""
    d = make_long_run(tmp_path / "run")
    keep_lines(d / "steps.jsonl", STEPS)  # steps 0..119
    keep_lines(d / "solves.jsonl", 6 * (STEPS - 1))  # the solves of steps 1..119
    damaged = make_report(d).warnings
    assert [w.split(":")[0] for w in damaged] == [
        "steps.jsonl has 120 row(s) ending at step 119, but summary.json says the run took 120 "
        "steps",
        "solves.jsonl holds 714 solve(s) (0 quantum, 714 classical) covering steps 1–119, but "
        "summary.json counts 720 (0 quantum, 720 classical) over 120 steps"]
    update_json(d / "summary.json", status="interrupted at step 120: KeyboardInterrupt")
    assert make_report(d).warnings == ()
    keep_lines(d / "steps.jsonl", STEPS - 1)  # two steps missing: more than an interrupt
    assert [w.split(":")[0] for w in make_report(d).warnings] == [
        "steps.jsonl has 119 row(s) ending at step 118, but summary.json says the run took 120 "
        "steps"]


def test_ranges():
    assert ranges([5, 1, 2, 3, 9, 9]) == "1–3, 5, 9"
    assert ranges([]) == ""


# -- the CLI ----------------------------------------------------------------------------------
def test_not_a_result_directory_exits_2_with_the_expected_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hi", encoding="utf-8")
    code, out, err = report(tmp_path, capsys)
    assert code == 2 and out == []
    assert len(err) == 1 and err[0].startswith(
        f"qnewton report: error: {tmp_path} is not a qnewton result directory: expected "
        "claims.json (reproduce), comparison.json (comparison), sweep.json (sweep) or "
        "config.json + steps.jsonl (run); found notes.txt")
    code, out, err = report(tmp_path / "nowhere", capsys)
    assert code == 2 and err[0].startswith(
        f"qnewton report: error: {tmp_path / 'nowhere'} is not a directory")
    assert "Traceback" not in "".join(err)


def test_a_report_that_cannot_be_written_exits_2(tmp_path, capsys):
    d = make_newton_run(tmp_path / "run")
    (d / "report.html").mkdir()  # in the way of the page (a read-only directory, as root)
    code, out, err = report(d, capsys)
    assert code == 2 and out == []
    assert err[0].startswith(f"qnewton report: error: cannot write the report into {d}: ")
    assert err[0].endswith("make the directory writable, or copy it somewhere writable and "
                           "report the copy")


def test_a_comparison_lists_its_runs_warnings(tmp_path, capsys):
    from reports_fixtures import make_comparison

    d = make_comparison(tmp_path / "cmp")
    keep_lines(d / "runs" / "qnewton@paper" / "steps.jsonl", 4)  # steps 0..3 of 6
    code, out, err = report(d, capsys)
    assert code == 0
    assert err == [
        "qnewton report: warning: run directory runs/missing of newton not found or has no "
        "steps.jsonl: its curves are skipped.",
        "qnewton report: warning: runs/qnewton@paper: steps.jsonl has 4 row(s) ending at step 3, "
        "but summary.json says the run took 6 steps: the rows for steps 4–6 are missing (the "
        "file was cut short or overwritten). The curves stop at step 3; the final figures come "
        "from summary.json."]
    assert out[-1].endswith("(2 warnings, see above)")
    # the run's own report, linked from the comparison, carries its warning too
    assert len(warnings(read_html(d / "runs" / "qnewton@paper" / "report.html"))) == 1


# -- the headline -----------------------------------------------------------------------------
def test_headline_of_a_long_run_from_its_files(tmp_path):
    d = make_long_run(tmp_path / "run")
    outcome, time, modeled, routing = headline(read_html(make_report(d).path))
    steps = [json.loads(line) for line in (d / "steps.jsonl").read_text().splitlines()]
    evals = [r for r in steps if "test_accuracy" in r]
    assert outcome == (f"Test accuracy went from {evals[0]['test_accuracy']:.3g} before "
                       f"training to {evals[-1]['test_accuracy']:.3g} after 120 steps.")
    measured = sum(LONG_PHASES.values())  # 11 s: estimation 4, curvature 3, forward_backward 2
    rest = measured - 4.0 - 3.0 - 2.0
    assert time == (
        f"Measured time (wall clock, this machine): {measured:.3g} s over 120 steps — "
        f"estimation 4 s ({400 / measured:.0f}%), curvature 3 s ({300 / measured:.0f}%), "
        f"forward_backward 2 s ({200 / measured:.0f}%); the other 4 phases {rest:.3g} s "
        f"({100 * rest / measured:.0f}%).")
    assert modeled == ("Modeled quantum time (cost model on the 'paper' profile, not wall "
                       "clock): 0 s, since no solve went quantum; total = measured − emulation "
                       f"+ modeled = {measured:.3g} s.")
    solves = [json.loads(line) for line in (d / "solves.jsonl").read_text().splitlines()]
    ratios = [s["predicted_quantum_seconds"] / s["predicted_classical_seconds"] for s in solves]
    median = statistics.median(ratios)
    assert median == pytest.approx((LONG_RATIOS[2] + LONG_RATIOS[3]) / 2)  # 120 of each block
    assert routing == (
        f"0 of {6 * STEPS} solves went quantum: on the 'paper' profile the modeled quantum time "
        f"was above the best classical prediction for every solve (median ratio "
        f"{fmt_ratio(median)}; closest ×2, block {LONG_BLOCKS[0]} at step 1).")
    assert fmt_ratio(median) == "×550"


def test_headline_with_quantum_solves_and_emulation(tmp_path):
    d = make_newton_run(tmp_path / "run")  # summary: measured 3, emulation 0.6, modeled 0.12
    outcome, time, modeled, routing = headline(read_html(make_report(d).path))
    assert outcome == "Test accuracy went from 0.1 before training to 0.94 after 6 steps."
    # phases sum to 2.95 of 3 s: 0.05 s outside; top three curvature, solve, forward_backward
    assert time == (
        "Measured time (wall clock, this machine): 3 s over 6 steps — curvature 0.9 s (30%), "
        "solve 0.8 s (27%), forward_backward 0.6 s (20%); the other 5 phases 0.7 s (23%). Of it, "
        "0.6 s (20%) went to emulating quantum solves on this machine, which the total replaces "
        "by their modeled time.")
    assert modeled == ("Modeled quantum time (cost model on the 'paper' profile, not wall "
                       "clock): 0.12 s for 4 quantum solve(s); total = measured − emulation + "
                       "modeled = 2.52 s, against 3 s measured.")
    # the fixture's solves: predicted quantum 1e-3 s vs classical 2e-3 s, ratio 0.5, for all
    # 12; the policy ("min-time") is not one qnewton knows, so only the counts are stated
    assert routing == "4 of 12 solves went quantum (policy 'min-time', profile 'paper')."


def test_headline_of_a_first_order_and_of_an_interrupted_run(tmp_path):
    d = make_first_order_run(tmp_path / "adam")
    lines = headline(read_html(make_report(d).path))
    assert lines[-1] == "No Hessian solves (optimizer adam), so nothing is modeled: total = " \
                        "measured = 3 s."
    assert len(lines) == 3
    d = make_long_run(tmp_path / "stopped")
    update_json(d / "summary.json", status="interrupted at step 120: KeyboardInterrupt")
    first = headline(read_html(make_report(d).path))[0]
    assert first.startswith("The run did not complete (status: interrupted at step 120: "
                            "KeyboardInterrupt). Test accuracy went from")


# -- why (not) quantum, on constructed solves -------------------------------------------------
def _solves(choices_and_ratios, policy="cost", **kw):
    return [solve_row(i, f"b{i % 2}", choice, policy=policy, predicted_classical_seconds=1e-3,
                      predicted_quantum_seconds=ratio * 1e-3, **kw)
            for i, (choice, ratio) in enumerate(choices_and_ratios)]


def test_why_not_quantum_under_the_cost_policy():
    mixed = _solves([("quantum", 0.5)] * 4 + [("classical", 2.0)] * 6 + [("classical", 40.0)] * 2)
    assert routing_reason(mixed) == (
        "4 of 12 solves went quantum (blocks b0, b1): the 'cost' policy picks the smaller of the "
        "modeled quantum time (profile 'paper') and the best classical prediction: quantum was "
        "predicted faster for those (median ratio ×0.5), slower for the other 8 (median ratio "
        "×2; closest ×2, block b0 at step 5).")
    every = _solves([("quantum", 0.1), ("quantum", 0.3)])
    assert routing_reason(every) == (
        "2 of 2 solves went quantum: the 'cost' policy picks the smaller of the modeled quantum "
        "time (profile 'paper') and the best classical prediction, and the quantum time was "
        "below the classical one for every solve (median ratio ×0.2).")
    # a solve routed classical although quantum was predicted faster: a fallback, said so
    odd = _solves([("classical", 3.0), ("classical", 0.5)])
    assert routing_reason(odd) == (
        "0 of 2 solves went quantum: on the 'paper' profile the modeled quantum time was above "
        "the best classical prediction for 1 of the 2 solves (median ratio ×3); the other 1 went "
        "classical although quantum was predicted faster (fallbacks after a failed quantum "
        "solve).")
    # an infinite quantum time (κ bound infinite) is a ratio of ∞, not an error
    inf = _solves([("classical", 1.0)]) + [solve_row(1, "b1", "classical", policy="cost",
                                                     predicted_quantum_seconds="inf",
                                                     predicted_classical_seconds=1e-3)]
    assert "median ratio ×∞; closest ×1, block b0 at step 1" in routing_reason(inf)


def test_why_not_quantum_under_the_other_policies():
    threshold = _solves([("classical", 5.0)] * 3 + [("quantum", 0.5)], policy="threshold")
    for s, k in zip(threshold, (2e4, 3e4, 5e5, 10.0), strict=True):
        s["kappa"] = k
    assert routing_reason(threshold, kappa_threshold=1e4) == (
        "1 of 4 solves went quantum: the 'threshold' policy sends a block classical when its κ "
        "estimate exceeds 1e+04; 3 solve(s) did (median κ 3e+04). The 'cost' policy would have "
        "chosen the same: the modeled quantum time on 'paper' was above the best classical "
        "prediction for every one of them (median ratio ×5; closest ×5, block b0 at step 1).")
    classical = _solves([("classical", 0.5), ("classical", 4.0), ("classical", 0.25)],
                        policy="classical")
    assert routing_reason(classical) == (
        "0 of 3 solves went quantum: the 'classical' policy never routes to the QLSA; every "
        "block went to the best classical solver. The 'cost' policy would have sent 2 of them "
        "quantum (modeled quantum time on 'paper' vs the best classical prediction: median "
        "ratio ×0.5).")
    quantum = _solves([("quantum", 3e6), ("quantum", 1e6), ("classical", 2e6)], policy="quantum")
    assert routing_reason(quantum) == (
        "2 of 3 solves went quantum: the 'quantum' policy sends every block to the QLSA; the 1 "
        "classical solve(s) are fallbacks after a failed quantum solve (modeled on the 'paper' "
        "profile). The 'cost' policy would have sent 2 of them classical (modeled quantum time "
        "on 'paper' vs the best classical prediction: median ratio ×2.0e6).")


def test_unrun_solves_are_not_counted():
    solves = _solves([("classical", 5.0), ("quantum", 0.5)])
    solves[1]["solver"] = "none"  # decided, never run (the ledger does not count it)
    assert routing_reason(solves).startswith("0 of 1 solves went quantum")
    assert routing_reason([]) == "No Hessian solves were recorded."
