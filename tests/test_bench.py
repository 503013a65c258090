"""Tests of the benchmark suite: helpers against hand-computed values, the case registry and
``--cases``, one smoke run of every case, and the curvature fast path the suite relies on
(per-sample gradients of linear layers). No timed assertions."""

from __future__ import annotations

import ast
import json
import math
import os
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from qnewton import bench
from qnewton import curvature as C
from qnewton.bench import peers, step_cost, suite
from qnewton.bench.cli import parse_cases
from qnewton.bench.release import release_block_direction
from qnewton.curvature.per_sample import engine, per_sample_rows
from qnewton.registry import Registry
from qnewton.solvers import MachineRates

# ------------------------------------------------------------------------------------- helpers


def test_summarize():
    s = bench.summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"min": 1.0, "median": 2.5, "max": 10.0, "n": 4}
    assert bench.summarize([7, -1, 4]) == {"min": -1.0, "median": 4.0, "max": 7.0, "n": 3}
    assert bench.summarize([5])["median"] == 5.0
    with pytest.raises(ValueError):
        bench.summarize([])


def test_time_repeats_counts_calls():
    calls = []
    times, last = bench.time_repeats(lambda: calls.append(1) or len(calls), repeats=3, warmup=2)
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert len(calls) == 5 and last == 5
    with pytest.raises(ValueError):
        bench.time_repeats(lambda: None, repeats=0)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5])
def test_fit_exponent_recovers_power_law(p):
    xs = [100, 200, 500, 1000, 5000]
    ys = [2.5e-7 * x**p for x in xs]
    got, c = bench.fit_exponent(xs, ys)
    assert got == pytest.approx(p, abs=1e-10)
    assert c == pytest.approx(2.5e-7, rel=1e-8)


def test_fit_exponent_two_points_by_hand():
    # y = 3 at x = 2 and y = 48 at x = 8: p = ln(16)/ln(4) = 2, c = 3/2² = 0.75.
    p, c = bench.fit_exponent([2.0, 8.0], [3.0, 48.0])
    assert p == pytest.approx(2.0, abs=1e-12)
    assert c == pytest.approx(0.75, rel=1e-12)


def test_fit_exponent_with_noise_is_close():
    gen = torch.Generator().manual_seed(0)
    xs = [2.0**k for k in range(4, 14)]
    ys = [x**3 * math.exp(0.05 * float(torch.randn(1, generator=gen))) for x in xs]
    assert bench.fit_exponent(xs, ys)[0] == pytest.approx(3.0, abs=0.05)


def test_fit_exponent_rejects_bad_input():
    with pytest.raises(ValueError):
        bench.fit_exponent([1.0], [1.0])
    with pytest.raises(ValueError):
        bench.fit_exponent([2.0, 2.0], [1.0, 3.0])


def test_regret_hand_made_example():
    # Three solves. Oracle: 1 + 2 + 1 = 4. Policy picks right, wrong (3 instead of 2), right.
    measured = [{"cholesky": 1.0, "woodbury": 1.5}, {"cholesky": 3.0, "woodbury": 2.0},
                {"cholesky": 5.0}]
    choices = [("classical", "cholesky", 9.0), ("classical", "cholesky", 4.0),
               ("quantum", "cholesky", 1.0)]
    pol, orc = [], []
    for m, (choice, solver, q) in zip(measured, choices, strict=True):
        a, b = bench.policy_and_oracle(choice, solver, m, q)
        pol.append(a)
        orc.append(b)
    assert pol == [1.0, 3.0, 1.0]
    assert orc == [1.0, 2.0, 1.0]
    assert bench.regret(pol, orc) == pytest.approx(5.0 / 4.0 - 1.0)
    assert bench.regret(orc, orc) == 0.0
    with pytest.raises(ValueError):
        bench.regret([1.0], [0.0])
    with pytest.raises(ValueError):
        bench.regret([], [])


def test_policy_choosing_quantum_when_classical_is_cheaper_pays_quantum():
    chosen, oracle = bench.policy_and_oracle("quantum", "cholesky", {"cholesky": 0.5}, 2.0)
    assert (chosen, oracle) == (2.0, 0.5)


def test_release_direction_matches_dense_solve():
    gen = torch.Generator().manual_seed(1)
    j = torch.randn(40, 25, generator=gen, dtype=torch.float64)
    d, phases = release_block_direction(j, 1e-3)
    f = j.T @ j / 40
    f.diagonal().add_(1e-3 * float(f.abs().max()))
    ref = torch.linalg.solve(f, j.mean(0))
    assert torch.allclose(d, ref, rtol=1e-9, atol=1e-12)
    assert set(phases) == {"form", "inverse", "multiply"}


def test_to_jsonable_gives_standard_json():
    value = {"a": math.inf, 1: (float("nan"), torch.tensor([1.5, 2.0])), "p": Path("x/y"),
             "ok": [True, None, 3, "s"]}
    got = bench.to_jsonable(value)
    assert got == {"a": "inf", "1": ["nan", [1.5, 2.0]], "p": "x/y", "ok": [True, None, 3, "s"]}
    json.dumps(got, allow_nan=False)  # raises on any non-standard float


def test_markdown_table_by_hand():
    result = {
        "mode": "smoke",
        "complete": True,
        "machine": {"host": "h", "torch": "t", "threads": 1, "cpu_count": 2, "date": "d"},
        "cases": [
            {"name": "a", "measured": 0.123456, "unit": "x", "baseline": "b|c", "target": 1,
             "met": True, "verdict": "met", "spread": {"min": 0.1, "max": 0.2, "n": 3},
             "load_average": {"before": [0.5, 0.4, 0.3], "after": [1.25, 0.5, 0.3]}},
            {"name": "n", "measured": 31.0, "unit": "x", "baseline": "", "target": ">= 30",
             "met": True, "verdict": "noisy", "spread": {"min": 28.0, "max": 35.0, "n": 3},
             "load_average": {"before": None, "after": None},
             "noisy_reasons": ["r1", "r2"], "note": "see"},
            {"name": "b", "measured": None, "unit": "", "baseline": "", "target": "",
             "met": False, "verdict": "error", "error": "ValueError: boom"},
        ],
    }
    assert bench.markdown_table(result) == (
        "# qnewton bench (smoke)\n\n"
        "h, torch t, 1 thread(s) pinned of 2 cores, d. All numbers measured on this machine "
        "unless labelled modeled. Spread: min–max of the figure over the interleaved repeats; "
        "load: 1-minute load average before → after the case. A case is noisy unless the median "
        "and every repeat give the same verdict and the load stayed ≤ the cores.\n\n"
        "| name | measured | spread | unit | baseline | target | load | met |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| a | 0.123 | 0.1–0.2 (n=3) | x | b/c | 1 | 0.50 → 1.25 | yes |\n"
        "| n | 31 | 28–35 (n=3) | x |  | >= 30 | n/a → n/a | noisy (median: yes) |\n"
        "| b | error |  |  |  |  | n/a → n/a | error |\n"
        "\nNotes:\n\n- **n**: r1; r2; see\n- **b**: ValueError: boom\n"
    )
    partial = dict(result, complete=False, interrupted=True, cases=result["cases"][:1])
    assert bench.markdown_table(partial).startswith(
        "# qnewton bench (smoke) — interrupted, 1 case(s) finished\n")


# ------------------------------------------------------------------ interleaving and verdicts


def test_time_interleaved_alternates_the_order_round_by_round():
    calls = []
    (ta, tb), last = bench.time_interleaved(
        [lambda: calls.append("a") or "A", lambda: calls.append("b") or "B"], repeats=3,
        warmup=1)
    # Warm-up round a b, then timed rounds b a, a b, b a: neither always runs first.
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(ta) == len(tb) == 3 and all(t >= 0 for t in ta + tb)
    assert last == ["A", "B"]
    with pytest.raises(ValueError):
        bench.time_interleaved([lambda: None], repeats=0)
    with pytest.raises(ValueError):
        bench.time_interleaved([], repeats=1)


def test_chunk_medians_by_hand():
    assert bench.chunk_medians([1, 2, 3, 4, 5], 2) == [2.0, 4.5]  # [1, 2, 3] and [4, 5]
    assert bench.chunk_medians([5, 1, 3], 3) == [5.0, 1.0, 3.0]
    assert bench.chunk_medians([4, 8, 1, 3, 9, 9], 2) == [4.0, 9.0]
    with pytest.raises(ValueError):
        bench.chunk_medians([1.0, 2.0], 3)


def _ratio_verdict(release, ours, target, loads=(1.0, 1.0), cores=2):
    """The newton-step rule on constructed timings: ratio of medians and per-round ratios."""
    import statistics

    ratio = statistics.median(release) / statistics.median(ours)
    per_round = [r / o for r, o in zip(release, ours, strict=True)]
    return bench.verdict(ratio >= target, [q >= target for q in per_round], loads, cores)


def test_noisy_rule_on_constructed_timings():
    ours = [0.125, 0.125, 0.125]  # ratios below are exact in binary floating point
    # Rounds 28x, 31x, 35x; median 31x >= 30 but one round misses: the target is in the spread.
    v, reasons = _ratio_verdict([3.5, 3.875, 4.375], ours, 30)
    assert v == "noisy" and reasons == [
        "1 of 3 repeats miss the target that the median meets (the target lies inside the spread)"]
    # Rounds 31x, 33x, 40x: all above, decided.
    assert _ratio_verdict([3.875, 4.125, 5.0], ours, 30) == ("met", [])
    # Rounds 30x, 31x, 32x: exactly on the target counts as met (>=).
    assert _ratio_verdict([3.75, 3.875, 4.0], ours, 30) == ("met", [])
    # Rounds 20x, 25x, 29x: all below, decided.
    assert _ratio_verdict([2.5, 3.125, 3.625], ours, 30) == ("missed", [])
    # Rounds 25x, 29x, 33x: the median (29x) misses but one round meets.
    v, reasons = _ratio_verdict([3.125, 3.625, 4.125], ours, 30)
    assert v == "noisy" and reasons == [
        "1 of 3 repeats meet the target that the median misses (the target lies inside the "
        "spread)"]
    # A clear result, but the 1-minute load average was above the cores before or after.
    clear = [3.875, 4.125, 5.0]
    assert _ratio_verdict(clear, ours, 30, loads=(1.5, 2.5)) == (
        "noisy", ["load average 2.50 above the 2 cores"])
    assert _ratio_verdict(clear, ours, 30, loads=(2.0, 2.0)) == ("met", [])  # at the cores: ok
    assert _ratio_verdict(clear, ours, 30, loads=(None, None)) == ("met", [])  # no load average
    assert len(_ratio_verdict([3.5, 3.875, 4.375], ours, 30, loads=(3.0, 1.0))[1]) == 2


# --------------------------------------------------------------------------- registry, --cases


def test_every_registered_case_is_accepted_by_cases_alone_and_together():
    for name in bench.BENCH_CASES:
        assert parse_cases(name) == [name]
    everything = " , ".join(bench.BENCH_CASES)
    assert parse_cases(everything) == list(bench.BENCH_CASES)
    assert list(bench.CASES) == list(bench.BENCH_CASES)


def test_qnewton_cli_hands_bench_to_the_suite(capsys):
    from qnewton.cli import main as qnewton_main

    with pytest.raises(SystemExit) as exc:
        qnewton_main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: qnewton bench") and "scheduler-overhead" in out
    assert "--threads" in out


def test_unknown_case_is_an_error_naming_the_choices(tmp_path, capsys):
    rc = bench.main(["--smoke", "--cases", "dense-solve-efficiency,nope",
                     "--out", str(tmp_path / "x.json")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--cases" in err and "got 'nope'" in err and "scheduler-overhead" in err
    assert not (tmp_path / "x.json").exists()


RATES = MachineRates(1e9, 1e9, 1e9)


def _entry(name, measured=1.0, met=True, per=(1.0, 1.0), per_met=(True, True)):
    return {"name": name, "measured": measured, "unit": "u", "baseline": "", "target": "",
            "met": met, "per_repeat": {"measured": list(per), "met": list(per_met)},
            "timings": {"t": [0.0]}}


@pytest.fixture
def fake_cases(monkeypatch):
    """A registry where ``a`` and ``b`` share one function (like scheduler-quality/overhead),
    ``c`` has its own, ``x``/``y`` share one that fails and ``k`` is interrupted (Ctrl-C).
    Calibration is stubbed; every call (and the torch thread count it ran with) is recorded."""
    calls = []

    def pair(s, rates, seed):
        calls.append(("pair", torch.get_num_threads()))
        return [_entry("a"), _entry("b")]

    def single(s, rates, seed):
        calls.append(("single", torch.get_num_threads()))
        return _entry("c")

    def broken(s, rates, seed):
        calls.append(("broken", torch.get_num_threads()))
        raise RuntimeError("boom")

    def interrupted(s, rates, seed):
        calls.append(("interrupted", torch.get_num_threads()))
        raise KeyboardInterrupt

    registry = Registry("case")
    for name, fn in (("a", pair), ("b", pair), ("c", single), ("x", broken), ("y", broken),
                     ("k", interrupted)):
        registry.register(name, fn)
    monkeypatch.setattr(suite, "BENCH_CASES", registry)
    monkeypatch.setattr(suite, "CASES", registry.names())
    monkeypatch.setattr(suite, "calibrate", lambda: calls.append(("calibrate", 0)) or RATES)
    return calls


def _names(calls):
    return [c[0] for c in calls if c[0] != "calibrate"]


def test_a_name_sharing_its_function_runs_alone(fake_cases):
    out = suite.run_suite("smoke", ["b"])
    assert [c["name"] for c in out["cases"]] == ["b"]
    assert _names(fake_cases) == ["pair"]


def test_shared_function_runs_once_for_all_its_names(fake_cases):
    out = suite.run_suite("smoke", ["c", "b", "a"])
    assert [c["name"] for c in out["cases"]] == ["c", "a", "b"]
    assert _names(fake_cases) == ["single", "pair"]


def test_a_failing_case_reports_every_name_it_serves_and_the_rest_still_runs(fake_cases):
    out = suite.run_suite("smoke", ["a", "b", "c", "x", "y"])
    assert [c["name"] for c in out["cases"]] == ["a", "b", "c", "x", "y"]
    assert _names(fake_cases) == ["pair", "single", "broken"]
    errors = {c["name"]: c.get("error") for c in out["cases"]}
    assert errors == {"a": None, "b": None, "c": None, "x": "RuntimeError: boom",
                      "y": "RuntimeError: boom"}
    assert all(c["measured"] is None for c in out["cases"] if c["name"] in ("x", "y"))
    assert {c["name"]: c["verdict"] for c in out["cases"]}["x"] == "error"


def test_the_suite_records_loads_and_decides_each_case(fake_cases, monkeypatch):
    loads = iter([[0.5, 0.4, 0.3], [1.0, 0.5, 0.3], [1.9, 1.0, 0.5], [2.6, 1.2, 0.6]])
    monkeypatch.setattr(suite, "load_average", lambda: next(loads))
    monkeypatch.setattr(suite.os, "cpu_count", lambda: 2)
    seen = []
    out = suite.run_suite("smoke", ["a", "c"], on_case=lambda r: seen.append(
        (r["complete"], [c["name"] for c in r["cases"]])))
    a, c = out["cases"]
    assert a["load_average"] == {"before": [0.5, 0.4, 0.3], "after": [1.0, 0.5, 0.3],
                                 "cores": 2}
    assert a["verdict"] == "met" and "noisy_reasons" not in a
    assert a["spread"] == {"min": 1.0, "median": 1.0, "max": 1.0, "n": 2}
    assert c["load_average"]["after"] == [2.6, 1.2, 0.6]
    assert c["verdict"] == "noisy" and c["noisy_reasons"] == [
        "load average 2.60 above the 2 cores"]
    # Results are handed over after every case, complete only at the end.
    assert seen == [(False, ["a"]), (False, ["a", "c"])] and out["complete"] is True
    assert out["verdict_rule"] == bench.VERDICT_RULE


def test_a_case_without_per_repeat_figures_is_an_error(fake_cases, monkeypatch):
    def bad(s, rates, seed):
        e = _entry("c")
        e["per_repeat"] = {"measured": [], "met": []}
        return e

    registry = Registry("case")
    registry.register("c", bad)
    monkeypatch.setattr(suite, "BENCH_CASES", registry)
    (entry,) = suite.run_suite("smoke", ["c"])["cases"]
    assert entry["verdict"] == "error" and "per_repeat" in entry["error"]


def test_threads_are_pinned_while_measuring_and_restored_after(fake_cases):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = suite.run_suite("smoke", ["c"])
        assert fake_cases == [("calibrate", 0), ("single", 1)]  # calibrated and measured pinned
        assert torch.get_num_threads() == 2
        assert out["machine"]["threads"] == 1 and out["machine"]["threads_pinned"] == 1
        assert out["machine"]["threads_before"] == 2
        suite.run_suite("smoke", ["c"], threads=2)
        assert fake_cases[-1] == ("single", 2)
        # Restored also when a case is interrupted (KeyboardInterrupt is not caught per case).
        with pytest.raises(KeyboardInterrupt):
            suite.run_suite("smoke", ["c", "k"])
        assert fake_cases[-1] == ("interrupted", 1) and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_run_suite_rejects_bad_arguments_before_running(fake_cases):
    for kwargs, message in (
        ({"mode": "huge"}, "mode must be one of"),
        ({"cases": ["nope"]}, "got 'nope'"),
        ({"cases": []}, "cases must name at least one of: a, b, c, x, y, k; got none"),
        ({"cases": ["a", "c", "a"]}, "cases must name each case once; got 'a' more than once"),
        ({"seed": -1}, "seed must be an integer in [0, 4294967295], got -1"),
        ({"threads": 0}, "threads must be an integer >= 1, got 0"),
    ):
        with pytest.raises(ValueError) as exc:
            suite.run_suite(**({"mode": "smoke"} | kwargs))
        assert message in str(exc.value)
    assert fake_cases == []  # not even calibrated


# ------------------------------------------------------------------- command-line arguments


def _bench(argv):
    """``qnewton bench ARGV`` through the project's CLI; the exit status either way."""
    from qnewton.cli import main as qnewton_main

    try:
        return qnewton_main(["bench", *argv])
    except SystemExit as exc:  # argparse's own errors (a flag without its value)
        return exc.code


BAD_ARGUMENTS = [
    # (argv with {d} = an existing folder and {f} = an existing file, the flag, text in message)
    (["--out", "{d}"], "--out", "is a directory"),
    (["--out", "{d}/new/"], "--out", "not a directory"),
    (["--out", "{f}/x.json"], "--out", "is a file"),
    (["--out", "{f}/deeper/x.json"], "--out", "is a file"),
    (["--out", "/proc/b.json"], "--out", "writable"),
    (["--out", ""], "--out", "file path"),
    (["--out", "{d}/b.md"], "--out", "must not end in .md"),
    (["--out", "{d}/m.json"], "--markdown", "is a directory"),  # {d}/m.md is a folder
    (["--markdown", "{d}"], "--markdown", "is a directory"),
    (["--markdown", "{f}/x.md"], "--markdown", "is a file"),
    (["--markdown", "/proc/b.md"], "--markdown", "writable"),
    (["--markdown", "{d}/o.json"], "--markdown", "must differ from --out"),
    (["--cases", ""], "--cases", "at least one"),
    (["--cases", " , "], "--cases", "at least one"),
    (["--cases", "scaling,,kappa-estimation"], "--cases", "empty"),
    (["--cases", "nope"], "--cases", "got 'nope'"),
    (["--cases", "scaling,kappa-estimation,scaling"], "--cases", "once"),
    (["--seed", "-1"], "--seed", "an integer in [0, 4294967295]"),
    (["--seed", "1.5"], "--seed", "an integer"),
    (["--seed", "abc"], "--seed", "an integer"),
    (["--seed", str(2**32)], "--seed", "an integer in"),
    (["--seed"], "--seed", "expected one argument"),
    (["--threads", "0"], "--threads", "an integer in [1,"),
    (["--threads", "x"], "--threads", "an integer"),
    (["--threads", "100000"], "--threads", "an integer in [1,"),
]


@pytest.fixture
def recording_cases(monkeypatch):
    """Every real case name, registered to a function that only records that it was called;
    calibration is recorded too."""
    calls = []
    registry = Registry("case")
    for name in bench.BENCH_CASES:
        registry.register(name, lambda s, r, seed, name=name: calls.append(name) or _entry(name))
    monkeypatch.setattr(suite, "BENCH_CASES", registry)
    monkeypatch.setattr(suite, "calibrate", lambda: calls.append("calibrate") or RATES)
    return calls


@pytest.mark.parametrize(("argv", "flag", "text"), BAD_ARGUMENTS)
def test_bad_arguments_exit_2_naming_the_flag_before_anything_runs(
        argv, flag, text, tmp_path, recording_cases, capsys):
    folder, file = tmp_path / "d", tmp_path / "f"
    folder.mkdir()
    (folder / "m.md").mkdir()
    file.write_text("not a folder")
    argv = [a.format(d=folder, f=file) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(folder / "o.json")]
    before = sorted(tmp_path.rglob("*"))
    assert _bench(["--smoke", *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and text in err, err
    assert "Traceback" not in err
    assert recording_cases == []  # no case ran, nothing was even calibrated
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no probe left behind


def test_good_paths_are_created_and_written_atomically(tmp_path, recording_cases, capsys):
    out = tmp_path / "new" / "deeper" / "r.json"
    md = tmp_path / "tables" / "r.md"
    rc = _bench(["--smoke", "--cases", "scaling,dense-solve-efficiency", "--out", str(out),
                 "--markdown", str(md), "--seed", "7", "--threads", "1"])
    assert rc == 0
    assert recording_cases == ["calibrate", "scaling", "dense-solve-efficiency"]
    data = json.loads(out.read_text())
    assert data["seed"] == 7 and data["complete"] is True
    assert md.read_text() == bench.markdown_table(data)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p not in (out, md)]
    assert leftovers == []  # no probe or .tmp file left


def test_interrupted_run_keeps_the_finished_cases(tmp_path, fake_cases, capsys):
    out = tmp_path / "r.json"
    assert bench.main(["--smoke", "--cases", "c,k", "--out", str(out)]) == 130
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["cases"]] == ["c"]
    assert data["complete"] is False and data["interrupted"] is True
    assert "interrupted" in out.with_suffix(".md").read_text().splitlines()[0]
    assert "1 finished case(s)" in capsys.readouterr().err


def test_results_that_cannot_be_written_are_saved_elsewhere(tmp_path, fake_cases, monkeypatch,
                                                            capsys):
    from qnewton.bench import cli as bench_cli

    out = tmp_path / "r.json"
    real = bench_cli.write_results

    def failing(result, json_path, md_path):
        if json_path == out:
            raise OSError(28, "No space left on device")
        return real(result, json_path, md_path)

    monkeypatch.setattr(bench_cli, "write_results", failing)
    monkeypatch.setattr(bench_cli.tempfile, "gettempdir", lambda: str(tmp_path))
    assert bench.main(["--smoke", "--cases", "c", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    saved = tmp_path / f"qnewton-bench-{os.getpid()}.json"
    assert "No space left on device" in err and str(saved) in err
    assert [c["name"] for c in json.loads(saved.read_text())["cases"]] == ["c"]



# ------------------------------------------------------------------------------------ structure

#: Modules of qnewton.bench from the bottom up; a module may import only earlier layers.
LAYERS = (
    ("stats", "settings"),
    ("release", "fixtures", "workloads", "peers", "full_batch_problem"),
    ("full_batch_problems", "levenberg_marquardt"),
    ("full_batch_runs",),
    ("newton_step", "dense_solve", "kappa", "scheduler", "scaling", "step_cost", "time_to_target",
     "width_scaling", "distributed_step", "full_batch"),
    ("cases",),
    ("suite",),
    ("cli",),
    ("__init__", "__main__"),
)
#: What sits above or beside the suite (``qnewton bench`` is dispatched from the CLI).
NOT_BELOW = ("qnewton.cli", "qnewton.experiments", "qnewton.reports")


def _qnewton_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            names.add(node.module)
    return {n for n in names if n == "qnewton" or n.startswith("qnewton.")}


def test_bench_imports_point_down():
    package = Path(bench.__file__).parent
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    assert {p.stem for p in package.glob("*.py")} == set(rank)
    for path in package.glob("*.py"):
        for name in _qnewton_imports(path):
            assert not name.startswith(NOT_BELOW) and name != "qnewton", (path.stem, name)
            if name.startswith("qnewton.bench"):
                inner = name.removeprefix("qnewton.bench").lstrip(".") or "__init__"
                assert rank[inner] < rank[path.stem], (path.stem, name)
    assert _qnewton_imports(package / "stats.py") == set()  # pure helpers


# ------------------------------------------------------------------------------------- smoke


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of the whole suite through the CLI, shared by the tests below."""
    out = tmp_path_factory.mktemp("bench") / "b.json"
    rc = bench.main(["--smoke", "--out", str(out)])
    return rc, out


def test_smoke_suite_schema(smoke_run):
    rc, out = smoke_run
    assert rc == 0
    text = out.read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert set(data) >= {"machine", "mode", "quick", "cases", "suite_seconds", "verdict_rule"}
    assert data["mode"] == "smoke" and data["quick"] is True and data["complete"] is True
    assert data["machine"]["threads"] == 1 and "calibrated_rates" in data["machine"]
    assert data["machine"]["threads_pinned"] == 1
    # Every registered case, once each, in registry order (scheduler-overhead included).
    assert [c["name"] for c in data["cases"]] == list(bench.BENCH_CASES)
    for case in data["cases"]:
        for key in bench.REQUIRED_KEYS:
            assert key in case, (case["name"], key)
        assert isinstance(case["met"], bool)
        assert isinstance(case["measured"], int | float) and math.isfinite(case["measured"])
        assert isinstance(case["timings"], dict) and case["timings"]
        assert "error" not in case
        # Load average before and after, each [1 min, 5 min, 15 min] on this Linux machine.
        loads = case["load_average"]
        assert loads["cores"] == os.cpu_count()
        for when in ("before", "after"):
            assert len(loads[when]) == 3 and all(x >= 0 for x in loads[when]), loads
        # The decision follows the rule from the figures it records.
        per = case["per_repeat"]
        assert len(per["measured"]) == len(per["met"]) >= 1
        assert case["spread"] == bench.summarize(per["measured"])
        verdict, reasons = bench.verdict(
            case["met"], per["met"], [loads["before"][0], loads["after"][0]], loads["cores"])
        assert case["verdict"] == verdict and case.get("noisy_reasons", []) == reasons
    md = out.with_suffix(".md").read_text()
    assert md == bench.markdown_table(data)


def test_smoke_measurements_are_consistent(smoke_run):
    cases = {c["name"]: c for c in json.loads(smoke_run[1].read_text())["cases"]}
    step = cases["newton-step-vs-release"]
    # Our directions equal the release's (float64) and the ratio is of the medians reported.
    assert step["max_relative_difference"] <= 1e-6
    assert {b["our_solver"] for b in step["blocks"]} <= {"woodbury", "cholesky", "cg"}
    assert step["measured"] == pytest.approx(step["release"]["median"] / step["ours"]["median"])
    dense = cases["dense-solve-efficiency"]
    assert [r["n"] for r in dense["sizes"]] == list(bench.SETTINGS["smoke"].dense_sizes)
    assert dense["measured"] == min(r["fraction_of_gemm"] for r in dense["sizes"])
    quality = cases["scheduler-quality"]
    for p in quality["profiles"].values():
        assert p["regret"] == pytest.approx(p["policy_seconds"] / p["oracle_seconds"] - 1)
        assert p["regret"] >= -1e-12  # the oracle is never beaten
    over = cases["scheduler-overhead"]
    assert 0.0 <= over["measured"] <= 100.0
    scaling = cases["scaling"]
    assert [p["hidden"] for p in scaling["points"]] == list(bench.SETTINGS["smoke"].scaling_hidden)
    # One figure per interleaved round (per training step for the overhead).
    repeats = bench.SETTINGS["smoke"].repeats
    for name in ("newton-step-vs-release", "dense-solve-efficiency", "kappa-estimation",
                 "scheduler-quality", "scaling"):
        assert len(cases[name]["per_repeat"]["measured"]) == repeats, name
    assert len(over["per_repeat"]["measured"]) == bench.SETTINGS["smoke"].sched_steps
    # The per-round ratios are those of the interleaved timings.
    t = step["timings"]
    assert step["per_repeat"]["measured"] == pytest.approx(
        [r / o for r, o in zip(t["release_seconds"], t["ours_seconds"], strict=True)])


def test_smoke_user_facing_cases_are_consistent(smoke_run):
    """step-cost, time-to-target and width-scaling: structure, and figures that follow from
    the timings they record (never their speed)."""
    cases = {c["name"]: c for c in json.loads(smoke_run[1].read_text())["cases"]}
    smoke = bench.SETTINGS["smoke"]
    for name in ("step-cost", "step-cost-ggn", "step-cost-kfac"):
        entry = cases[name]
        assert len(entry["rows"]) == len(smoke.cost_workloads)
        for row in entry["rows"]:
            t = entry["timings"][row["name"]]
            assert len(t["qnewton"]) == len(t["adam"]) == smoke.repeats
            # the ratio is of the medians of the interleaved timings, per round of the rounds
            assert row["measured"] == pytest.approx(
                statistics.median(t["qnewton"]) / statistics.median(t["adam"]))
            assert row["per_repeat"]["measured"] == pytest.approx(
                [q / a for q, a in zip(t["qnewton"], t["adam"], strict=True)])
        assert entry["measured"] == max(r["measured"] for r in entry["rows"])
        assert entry["qnewton_settings"]["curvature"] == "fisher"  # the CLI's default kind
        if name == "step-cost-kfac":  # the Linear/Conv blocks are Kronecker blocks
            assert any(p == "kronecker" for row in entry["rows"] for p in row["paths"].values())
        # every block of every bench model has its path, and none takes the per-sample loop
        assert all(row["paths"] for row in entry["rows"])
        assert entry["loop_blocks"] == {row["name"]: [] for row in entry["rows"]}
    over = cases["step-overhead"]
    assert len(over["rows"]) == len(step_cost.RATIO_TARGETS) * len(smoke.cost_workloads)
    for model in over["models"]:
        for kind, k in model["kinds"].items():
            assert k["newton_parameter_fraction"] is not None, (model["label"], kind)
            for phases, share in zip(k["phases_per_step"], k["overhead_per_step"], strict=True):
                assert share == pytest.approx(
                    (phases.get("estimation", 0) + phases.get("scheduling", 0))
                    / sum(phases.values()))
    ttt = cases["time-to-target"]
    (task,) = ttt["tasks"]
    assert task["target"] == smoke.ttt_targets[0][1]
    qn = task["best"]["qnewton"]
    for run in (r for runs in task["runs"].values() for r in runs):
        assert run["steps"] <= smoke.ttt_max_steps
        if run["status"] == "reached":  # reached at an evaluation, at the target
            assert run["curve"][-1][2] >= task["target"]
            assert run["steps"] % smoke.ttt_eval_every == 0
            assert run["seconds_to_target"] == run["curve"][-1][1]
    methods = {"qnewton", "qnewton-kfac", "adam", "lbfgs", "ggn-cg"} | (
        {"kfac"} if peers.curvlinops_available() else set())
    assert set(task["runs"]) == methods
    for row in ttt["rows"]:
        peer = row["name"].rsplit("/ ", 1)[1]
        if peer not in methods:
            assert row["measured"] is None and row["status"] == peers.KFAC_SKIPPED
        elif math.isfinite(qn["seconds_to_target"]) and row["measured"]:
            assert row["measured"] == pytest.approx(
                qn["seconds_to_target"] / task["best"][peer]["seconds_to_target"])
    width = cases["width-scaling"]
    assert [(p["batch"], p["hidden"]) for p in width["points"]] == [
        (b, h) for b in smoke.width_batches for h in smoke.width_hidden]
    for p in width["points"]:
        assert p["peak_memory_bytes"] >= 0 and p["parameters"] > 0
        assert 0 <= p["newton_parameters_per_step"] <= p["parameters"]
    assert width["measured"] == min(p["newton_parameter_fraction"] for p in width["points"])


def test_smoke_case_selection(tmp_path):
    out = tmp_path / "c.json"
    md = tmp_path / "table.md"
    rc = bench.main(["--smoke", "--cases", "dense-solve-efficiency", "--out", str(out),
                     "--markdown", str(md)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["cases"]] == ["dense-solve-efficiency"]
    assert md.exists() and not out.with_suffix(".md").exists()


# ------------------------------------------------------------- curvature fast path (per-sample)


class _Net(nn.Module):
    """Linear layers, a tied weight, an ``x @ W`` parameter and an optional BatchNorm."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.head = nn.Parameter(torch.randn(6, 3))
        self.nobias = nn.Linear(6, 6, bias=False)
        self.bn = nn.BatchNorm1d(6)

    def forward(self, x, use_bn=False):
        h = torch.tanh(self.lin(x))
        h = torch.tanh(self.lin(h))  # tied: the same weight used twice
        h = torch.tanh(self.nobias(h))
        if use_bn:
            h = self.bn(h)  # couples the samples
        return h @ self.head


def _factors(model, x, y, use_bn, fast, monkeypatch):
    blocks = C.blocks_from_module(model)
    losses = nn.functional.cross_entropy(model(x, use_bn), y, reduction="none")
    refused = []
    with monkeypatch.context() as m:
        if not fast:  # the Fisher kind then takes the generic path for every block
            m.setattr(engine, "per_sample_rows",
                      lambda *a, **k: refused.append(1) or set())
        res = C.compute_curvature(losses, blocks, C.CurvatureConfig(kind="fisher"))
    assert bool(refused) == (not fast)  # (the engine asks the handlers twice: strict, residual)
    assert all(isinstance(b, C.FactorBlock) for b in res.blocks)
    return {b.name: b.factor for b in res.blocks}


@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_per_sample_rows_equal_generic(use_bn, dtype, monkeypatch):
    torch.manual_seed(0)
    model = _Net().to(dtype)
    x = torch.randn(24, 6, dtype=dtype)
    y = torch.randint(0, 3, (24,))
    fast = _factors(model, x, y, use_bn, fast=True, monkeypatch=monkeypatch)
    slow = _factors(model, x, y, use_bn, fast=False, monkeypatch=monkeypatch)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for name in slow:
        ref = slow[name]
        scale = float(ref.abs().max()) or 1.0
        assert float((fast[name] - ref).abs().max()) <= tol * scale, name


def test_fast_path_taken_for_linear_and_refused_with_coupling():
    torch.manual_seed(0)
    model = _Net().double()
    x = torch.randn(16, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    blocks = C.blocks_from_module(model)
    # With BatchNorm (training mode, without the held-statistics hooks of factor_rows) the layers
    # before it are coupled across samples and refused; its γ, β (rows from the saved batch
    # statistics) and the head after it still have exact per-sample gradients.
    for use_bn, expect in ((False, {"lin.weight", "lin.bias", "nobias.weight", "head"}),
                           (True, {"head", "bn.weight", "bn.bias"})):
        losses = nn.functional.cross_entropy(model(x, use_bn), y, reduction="none")
        factors = {id(b): torch.empty(16, b.numel, dtype=torch.float64) for b in blocks}
        done = per_sample_rows(losses, [torch.ones_like(losses)], 16, blocks, factors,
                               C.CurvatureConfig())
        assert {b.name for b in blocks if id(b) in done} == expect


# ------------------------------------------------------------- peers, workloads, extra, rows


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def test_kfac_peer_direction_equals_dense_kfac_inverse_on_a_tiny_model():
    """Ground truth: for one linear layer, K-FAC (empirical Fisher, weight and bias as separate
    blocks, curvlinops' default) is blockdiag(B ⊗ A, B) with A = (1/N)·Σ xₙxₙᵀ and
    B = (1/N)·Σ gₙgₙᵀ (gₙ = softmax − onehot); the peer's direction is that matrix's damped
    inverse applied to the gradient, (K + λI)⁻¹ g, in the parameters' order (weight, bias)."""
    pytest.importorskip("curvlinops")
    gen = torch.Generator().manual_seed(3)
    n, d, c, lam = 24, 5, 3, 1e-2
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d, c)).double()
    direction, loss = peers.kfac_direction(model, x, y, lam, fisher_type="empirical",
                                           heuristic_damping=False)
    with torch.no_grad():
        out = model(x)
    g_out = out.softmax(1) - nn.functional.one_hot(y, c)
    b = g_out.T @ g_out / n
    dense = torch.block_diag(torch.kron(b, x.T @ x / n), b)  # W row-major, then bias
    order = list(range(dense.shape[0]))
    grad, loss2 = peers.mean_loss_gradient(model, x, y)
    expected = torch.linalg.solve(dense + lam * torch.eye(len(order), dtype=torch.float64),
                                  _flat(grad))
    assert torch.allclose(_flat(direction), expected, rtol=1e-8, atol=1e-12)
    assert loss == pytest.approx(loss2)


def test_ggn_cg_peer_equals_the_dense_damped_ggn_solve():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=gen)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    params = list(model.parameters())
    names = [k for k, _ in model.named_parameters()]
    jac = torch.func.jacrev(
        lambda *th: torch.func.functional_call(model, dict(zip(names, th, strict=True)), (x,)),
        argnums=tuple(range(len(params))))(*[p.detach() for p in params])
    j = torch.cat([t.reshape(12, 3, -1) for t in jac], 2)
    with torch.no_grad():
        p = model(x).softmax(1)
    h = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    ggn = torch.einsum("bcn,bcd,bdm->nm", j, h, j) / 12
    size = ggn.shape[0]
    sizes = [t.numel() for t in params]
    for k, e in enumerate(torch.eye(size, dtype=torch.float64)):
        v = [c.reshape(t.shape) for c, t in zip(e.split(sizes), params, strict=True)]
        assert torch.allclose(_flat(peers.ggn_product(model, x, v)), ggn[:, k], atol=1e-12)
    direction, _ = peers.ggn_cg_direction(model, x, y, 1e-2, iterations=size)
    grad, _ = peers.mean_loss_gradient(model, x, y)
    expected = torch.linalg.solve(ggn + 1e-2 * torch.eye(size, dtype=torch.float64), _flat(grad))
    assert torch.allclose(_flat(direction), expected, rtol=1e-7, atol=1e-10)


def test_time_to_target_reports_kfac_skipped_without_the_extra(monkeypatch):
    """Without curvlinops the K-FAC row says how to install it and the case still measures
    every other peer (not an error); with it (the smoke run,
    test_smoke_user_facing_cases_are_consistent) the K-FAC peer runs."""
    import dataclasses

    from qnewton.bench import time_to_target as ttt

    available = False
    monkeypatch.setattr(ttt, "curvlinops_available", lambda: available)
    s = dataclasses.replace(bench.SETTINGS["smoke"], ttt_max_steps=2, ttt_eval_every=2,
                            ttt_targets=(("digits", 0.99),))
    entry = ttt.case_time_to_target(s, RATES, 0)
    (task,) = entry["tasks"]
    assert ("kfac" in task["runs"]) is available
    (row,) = [r for r in entry["rows"] if r["name"].endswith("/ kfac")]
    if available:
        assert row["status"] != peers.KFAC_SKIPPED
    else:
        assert row["measured"] is None and row["status"] == peers.KFAC_SKIPPED
        assert "bench extra" in entry["note"]
    assert {"adam", "lbfgs", "ggn-cg", "qnewton"} <= set(task["runs"])


def test_width_point_in_a_fresh_process():
    """The subprocess path the quick and full modes use: one tiny point, its JSON back."""
    from qnewton.bench import width_scaling

    point = width_scaling._run_point({
        "task": "digits", "hidden": 4, "batch": 16, "repeats": 1, "warmup": 1, "seed": 0,
        "threads": 1, "rates": RATES.to_dict(), "tiny": True}, fresh_process=True)
    assert point["hidden"] == 4 and point["batch"] == 16 and len(point["qnewton_seconds"]) == 1
    assert point["peak_memory_bytes"] >= 0 and point["memory_method"]
    assert point["newton_parameter_fraction"] == 1.0


def test_cnn_and_gru_workloads_train_with_qnewton():
    from qnewton.bench.workloads import build_qnewton, closure_for, load_workload

    for name in ("digits-cnn", "digits-gru", "digits-transformer", "digits-bn-cnn"):
        w = load_workload(name, 0, batch=8, tiny=True)
        model = w.make_model()
        assert model(w.x_train[:3]).shape == (3, 10)
        before = [p.detach().clone() for p in model.parameters()]
        opt = build_qnewton(model, RATES, "ggn")
        idx = w.batch_indices(0, 0)
        assert idx.shape == (8,)
        opt.step(closure_for(model, w.x_train[idx], w.y_train[idx], "ggn"))
        assert opt.ledger.summary()["newton_parameter_fraction"] == 1.0
        moved = [not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)]
        # every block moves, unless the coupled step scales (the adaptive rule, several blocks)
        # set some to 0: at batch 8 the GRU's two bias vectors have the same curvature image
        assert any(moved)
        assert all(moved) or opt.last_step_info["block_scales"][0] == 0.0


def test_bench_constraints_pin_the_torch_of_pyproject():
    root = Path(__file__).resolve().parents[1]
    pins = {line.split("==")[0]: line.split("==")[1] for line in
            (root / "scripts" / "bench-constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    assert f'"torch=={pins["torch"]}"' in (root / "pyproject.toml").read_text()
    assert "bench-constraints.txt" in (root / "scripts" / "setup.sh").read_text()


def test_markdown_detail_rows_by_hand():
    entry = {"name": "a", "measured": 2.0, "unit": "x", "baseline": "b", "target": "<= 1",
             "met": False, "per_repeat": {"measured": [2.0, 3.0], "met": [False, False]},
             "rows": [
                 {"name": "m1", "measured": 2.0, "unit": "x", "baseline": "q", "target": "<= 1",
                  "met": False, "per_repeat": {"measured": [2.0, 1.5], "met": [False, False]}},
                 {"name": "m2", "measured": None, "status": "skipped: why", "unit": "",
                  "baseline": "", "target": "", "met": None},
                 {"name": "m3", "measured": 4.0, "unit": "ms", "baseline": "", "target": "",
                  "met": None, "per_repeat": {"measured": [4.0, 5.0], "met": []}}]}
    suite.decide(entry, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 2)
    assert entry["rows"][0]["verdict"] == "missed"
    assert entry["rows"][2]["spread"] == bench.summarize([4.0, 5.0])
    assert "verdict" not in entry["rows"][1] and "verdict" not in entry["rows"][2]
    table = bench.markdown_table({"machine": {"host": "h", "torch": "t", "threads": 1,
                                              "cpu_count": 2, "date": "d"}, "cases": [entry]})
    assert table.splitlines()[-3:] == [
        "| ↳ m1 | 2 | 1.5–2 (n=2) | x | q | <= 1 |  | **no** |",
        "| ↳ m2 | skipped: why |  |  |  |  |  |  |",
        "| ↳ m3 | 4 | 4–5 (n=2) | ms |  |  |  |  |",
    ]
