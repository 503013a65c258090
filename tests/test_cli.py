import json
import subprocess
import sys

import pytest
import torch

from qnewton.cli import build_parser, main
from qnewton.cli.estimate import estimate_report
from qnewton.conditioning import ConditioningConfig, condition
from qnewton.curvature import FactorBlock
from qnewton.quantum import get_profile
from qnewton.scheduling import Scheduler, SchedulerConfig
from qnewton.solvers import MachineRates


def run_estimate(capsys, *args):
    code = main(["estimate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_estimate_json_has_the_documented_keys(capsys):
    code, out, _ = run_estimate(capsys, "--n", "10000", "--d", "100", "--kappa", "1000", "--json")
    assert code == 0
    report = json.loads(out)
    for key in ("queries", "quantum_seconds", "classical_seconds", "choice", "hardware", "qlsa"):
        assert key in report
    # the default is a device model that charges the vector readout a Newton step needs
    assert report["hardware"] == "surface-code" and report["qlsa"] == "jennings"
    assert report["hardware_label"] == "surface-code" and report["readout"] == "vector"
    assert list(report["classical_seconds"]) == ["cholesky", "lu", "inverse", "cg"]
    assert report["allowed_solvers"] == ["cholesky", "cg"]  # woodbury needs --rank
    # matched accuracy: the vector the step receives has error eps = 1e-2 in all
    budget = report["error_budget"]
    assert budget["eps_qlsa"] + budget["delta_readout"] == pytest.approx(1e-2)
    code, out, _ = run_estimate(capsys, "--n", "10000", "--d", "100", "--kappa", "1000",
                                "--hardware", "paper", "--json")
    paper = json.loads(out)
    # paper profile, 1 ns gates: 14 gates per query at N = 10000 (docs/method.md §4.4)
    assert paper["quantum"]["seconds_per_query"] == pytest.approx(14e-9)
    assert "PAPER'S HYPOTHESIS" in paper["hardware_label"]
    assert "PAPER'S HYPOTHESIS" in paper["quantum_seconds_kind"]


def factor_system(n, m, reg):
    gen = torch.Generator().manual_seed(0)
    block = FactorBlock("w", "fisher", torch.randn(m, n, generator=gen, dtype=torch.float64),
                        scale=1.0 / m)
    return condition(block, ConditioningConfig(reg=reg))


@pytest.mark.parametrize("hardware,gate_time", [("paper", None), ("paper", 1e-18),
                                                ("surface-code", None)])
@pytest.mark.parametrize("n,m,reg", [(60, 20, 1e-2), (400, 40, 1e-3)])
def test_estimate_and_the_scheduler_decide_the_same_way(n, m, reg, hardware, gate_time):
    rates = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                              bandwidth_bytes_per_s=1e10)
    overrides = {} if gate_time is None else {"gate_time_s": gate_time}
    # gram_below=0, share_gram=False: a Gram matrix formed by the analysis is sunk cost that
    # makes training's own Woodbury prediction cheaper by 2NM²; a stand-alone estimate cannot
    # have formed one.
    scheduler = Scheduler(SchedulerConfig(hardware=get_profile(hardware, **overrides),
                                          gram_below=0, share_gram=False), rates=rates)
    system = factor_system(n, m, reg)
    analysis = scheduler.analyse(system)
    decision = scheduler.decide(system, analysis)
    args = build_parser().parse_args([
        "estimate", "--n", str(system.n), "--d", str(system.d),
        "--kappa", repr(analysis.kappa.value), "--alpha", repr(analysis.alpha),
        "--rank", str(m), "--alpha-factor", repr(analysis.alpha_factor), "--hardware", hardware,
        *(["--gate-time", repr(gate_time)] if gate_time else []),
    ])
    report = estimate_report(args, rates=rates)
    assert report["classical_seconds"] == decision.predicted_classical
    assert (report["choice"], report["best_classical"]) == (decision.choice,
                                                            decision.classical_solver)
    if decision.quantum_rejection == "guaranteed-rejection":
        # training did not price the QLSA at κ: its floor (κ = 1, α = 1) already lost, and
        # bounds the cost `estimate` prices at κ from below (docs/method.md §4.8)
        assert decision.quantum.total_seconds <= report["quantum_seconds"]
        assert decision.quantum.total_seconds > decision.predicted_classical_seconds
    else:
        assert report["quantum_seconds"] == decision.quantum.total_seconds
        assert report["block_encoding"] == decision.quantum.block_encoding


def test_gate_time_and_profile_change_the_modeled_time(capsys):
    base = ["--n", "10000", "--d", "100", "--kappa", "1000", "--json", "--hardware", "paper"]
    paper = json.loads(run_estimate(capsys, *base)[1])
    atto = json.loads(run_estimate(capsys, *base, "--gate-time", "1e-18")[1])
    surface = json.loads(run_estimate(capsys, *base, "--hardware", "surface-code")[1])
    assert atto["quantum_seconds"] == pytest.approx(paper["quantum_seconds"] * 1e-9)
    assert atto["queries"] == paper["queries"]
    assert surface["quantum_seconds"] > 1e6 * paper["quantum_seconds"]
    assert surface["choice"] == "classical"


def test_text_output_labels_modeled_times(capsys):
    code, out, _ = run_estimate(capsys, "--n", "1000", "--d", "10", "--kappa", "50")
    assert code == 0
    assert "modeled (surface-code profile)" in out and "Choice (cost policy): " in out
    assert "error budget: ε_QLSA" in out and "T-count" in out
    code, out, _ = run_estimate(capsys, "--n", "1000", "--d", "10", "--kappa", "50",
                                "--hardware", "paper")
    assert "modeled (paper (THE PAPER'S HYPOTHESIS, not a device model" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--n", "-5", "--d", "1", "--kappa", "10"], "--n must be a positive integer"),
        (["--n", "10", "--d", "20", "--kappa", "10"], "--d must be <= --n"),
        (["--n", "10", "--d", "2", "--kappa", "0.5"], "--kappa must be a finite number >= 1"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--eps", "1"],
         "--eps must be a finite number > 0 and < 1"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--qlsa", "grover"], "--qlsa must be one of"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--hardware", "abacus"],
         "--hardware must be one of"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--readout", "psychic"],
         "--readout must be one of"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--gate-time", "0"],
         "--gate-time must be a finite number > 0"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--solvers", "qr"],
         "--solvers must be one of"),
        (["--n", "10", "--d", "2", "--kappa", "nan"], "--kappa must be a finite number >= 1"),
    ],
)
def test_invalid_arguments_exit_non_zero_and_name_the_argument(capsys, args, message):
    code, out, err = run_estimate(capsys, *args)
    assert code != 0
    assert message in err
    assert out == ""


def test_python_dash_m_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "qnewton", "estimate", "--n", "100", "--d", "5", "--kappa", "20",
         "--json"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 100


def train_args(out, *extra):
    return ["train", "--task", "digits", "--tiny", "--max-steps", "2", "--batch-size", "64",
            "--no-progress", "--out", str(out), *extra]


def test_train_then_report_from_the_command_line(tmp_path, capsys):
    assert main(train_args(tmp_path / "run")) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["steps"] == 2 and summary["optimizer"] == "qnewton"
    assert main(["report", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "report.html").exists()
    # the same directory again, without --resume: refused, nothing overwritten
    before = (tmp_path / "run" / "summary.json").read_text()
    assert main(train_args(tmp_path / "run")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "run" / "summary.json").read_text() == before


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--optimizer", "lbfgs"], "optimizer must be one of"),
        (["--hardware", "abacus"], "hardware must be one of"),
        (["--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--lr", "-3"], "lr must be"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
        (["--solvers", "qr"], "--solvers must be one of"),
        (["--max-steps", "0"], "--max-steps must be an integer >= 1"),
        (["--gate-time", "-1"], "--gate-time must be a finite number > 0"),
    ],
)
def test_train_rejects_bad_flags(tmp_path, capsys, extra, message):
    assert main(train_args(tmp_path / "run", *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_reports_an_unwritable_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(train_args(blocker / "run")) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_report_on_a_directory_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    import qnewton

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"qnewton {qnewton.__version__}"


def test_calibrate_show_and_reset(tmp_path, monkeypatch, capsys):
    from qnewton import calibration
    from qnewton.calibration.load import CpuSnapshot
    from qnewton.calibration.probe import ProbeTimes

    monkeypatch.setenv("QNEWTON_CACHE_DIR", str(tmp_path))
    times = ProbeTimes(gemm_s=0.05, cholesky_s=0.02, matvec_s=0.005, call_s=6e-5, cg_s=3e-4,
                       cg_iterations=8, rounds=3)
    ticks = iter(range(100))

    def quiet():  # one core's worth of CPU per second, for this process only
        t = float(next(ticks))
        return CpuSnapshot(t, t, t, 0.1)

    monkeypatch.setattr(calibration, "measure", lambda rounds: times)
    monkeypatch.setattr(calibration, "snapshot", quiet)
    assert main(["calibrate", "--show"]) == 0
    assert "no cached rates" in capsys.readouterr().out
    assert main(["calibrate"]) == 0
    out = capsys.readouterr().out
    assert "60 µs" in out and "cached" in out and "measured on a quiet machine" in out
    assert main(["calibrate", "--show"]) == 0
    shown = capsys.readouterr().out
    assert "60 µs" in shown and str(calibration.cache_path()) in shown
    assert main(["calibrate", "--reset"]) == 0
    assert "removed" in capsys.readouterr().out and calibration.read_cache() is None
    assert main(["calibrate", "--show", "--reset"]) == 2  # one action at a time


def test_train_threads_and_load_average_are_recorded(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(train_args(tmp_path / "run", "--threads", "1")) == 0
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for machine in (config["machine_at_start"], summary["machine_at_end"]):
        assert machine["threads"] == 1 and len(machine["load_average"]) == 3
    # the rates that routed the run, with their provenance, in both files
    assert summary["rates"] == config["rates"] and summary["rates"]["threads"] == 1
    assert summary["rates"]["provenance"]["note"]
