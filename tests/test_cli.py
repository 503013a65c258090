import json
import subprocess
import sys

import pytest

from qnewton.cli import main


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
    assert report["hardware"] == "paper" and report["qlsa"] == "jennings"
    assert set(report["classical_seconds"]) >= {"cholesky", "lu", "inverse", "cg"}
    assert report["choice"] in ("quantum", "classical")
    best = min(report["classical_seconds"].values())
    assert report["choice"] == ("quantum" if report["quantum_seconds"] < best else "classical")


def test_gate_time_and_profile_change_the_modeled_time(capsys):
    base = ["--n", "10000", "--d", "100", "--kappa", "1000", "--json"]
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
    assert "modeled (paper profile)" in out and "Choice:" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--n", "-5", "--d", "1", "--kappa", "10"], "--n must be a positive integer"),
        (["--n", "10", "--d", "20", "--kappa", "10"], "--d must be <= --n"),
        (["--n", "10", "--d", "2", "--kappa", "0.5"], "--kappa must be >= 1"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--eps", "1"], "--eps must be in (0, 1)"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--qlsa", "grover"], "--qlsa must be one of"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--hardware", "abacus"],
         "--hardware must be one of"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--readout", "psychic"],
         "--readout must be one of"),
        (["--n", "10", "--d", "2", "--kappa", "10", "--gate-time", "0"], "--gate-time must be > 0"),
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
