"""Bad input to compare, sweep and reproduce, through the command line: exit code 2, a message
that names the flag, no traceback, no training and nothing created or modified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qnewton.experiments.runs as experiment_runs
from qnewton.cli import main
from qnewton.training import TrainConfig

TINY = ["--task", "digits", "--tiny", "--max-steps", "1", "--no-progress"]


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path below ``root`` with its modification time and contents."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns,
                                       p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def fake_run(run_dir: Path, config: TrainConfig, status: str = "completed") -> None:
    """The files of a finished training run (no training: the checks only read them)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"config": config.to_dict(), "rates": {}}))
    (run_dir / "summary.json").write_text(json.dumps({"status": status, "metric": "accuracy"}))
    (run_dir / "steps.jsonl").write_text("")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory with a file, a training run, a sweep and a comparison whose run of
    SGD has other settings than TINY's; training is forbidden."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep me")
    fake_run(tmp_path / "trained", TrainConfig(task="digits", tiny=True))
    (tmp_path / "swept").mkdir()
    (tmp_path / "swept" / "sweep.json").write_text("{}")
    fake_run(tmp_path / "compared" / "runs" / "sgd",
             TrainConfig(task="digits", optimizer="sgd", tiny=True, max_steps=5))
    (tmp_path / "compared" / "comparison.json").write_text("{}")

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the input is bad")

    monkeypatch.setattr(experiment_runs, "train", no_training)
    return tmp_path


COMPARE = ["compare", *TINY, "--optimizers", "sgd,qnewton"]
SWEEP = ["sweep", *TINY, "--optimizer", "qnewton"]
SWEEP_REG = [*SWEEP, "--param", "reg"]
REPRODUCE = ["reproduce", "--no-progress"]

CASES = {
    # --out: a file, empty (it used to mean the working directory), below a file, not creatable,
    # holding another kind of result, or holding runs with other settings
    "compare-out-file": ([*COMPARE, "--out", "afile"], "--out", "is a file"),
    "compare-out-empty": ([*COMPARE, "--out", ""], "--out", "directory path"),
    "compare-out-below-file": ([*COMPARE, "--out", "afile/c"], "--out", "below the file"),
    "compare-out-unwritable": ([*COMPARE, "--out", "/proc/qnewton-x"], "--out", "writable"),
    "compare-out-training-run": ([*COMPARE, "--out", "trained"], "--out", "training run"),
    "compare-out-sweep": ([*COMPARE, "--out", "swept"], "--out", "holds a sweep"),
    "compare-out-other-settings": ([*COMPARE, "--out", "compared"], "--out",
                                   "--max-steps 5 there, 1 now"),
    "compare-target-nan": ([*COMPARE, "--target-accuracy", "nan", "--out", "c"],
                           "--target-accuracy", "got nan"),
    "compare-target-above-1": ([*COMPARE, "--target-accuracy", "1.5", "--out", "c"],
                               "--target-accuracy", "(0, 1]"),
    "compare-target-0": ([*COMPARE, "--target-accuracy", "0", "--out", "c"],
                         "--target-accuracy", "> 0"),
    "compare-duplicate-optimizer": (["compare", *TINY, "--optimizers", "sgd,newton,sgd",
                                     "--out", "c"], "--optimizers", "sgd twice"),
    "compare-duplicate-hardware": ([*COMPARE, "--hardware", "paper", "--hardware", "paper",
                                    "--out", "c"], "--hardware", "paper twice"),
    "compare-unknown-first-optimizer": (["compare", *TINY, "--optimizers", "lbfgs,sgd",
                                         "--out", "c"], "--optimizers", "'lbfgs'"),
    "compare-repeats-0": ([*COMPARE, "--repeats", "0", "--out", "c"], "--repeats", ">= 1"),
    # sweep: every value is checked (and against the parameter's range) before the first runs
    "sweep-values-nan": ([*SWEEP_REG, "--values", "1e-3,nan", "--out", "s"], "--values",
                         "got nan (value 2 of 2)"),
    "sweep-values-duplicate": ([*SWEEP_REG, "--values", "1e-3,2e-3,0.001", "--out", "s"],
                               "--values", "0.001 twice"),
    "sweep-reg-negative": ([*SWEEP_REG, "--values", "1e-3,-1", "--out", "s"], "--values",
                           ">= 0"),
    "sweep-prune-above-1": ([*SWEEP, "--param", "prune", "--values", "0.5,1.5", "--out", "s"],
                            "--values", "(0, 1]"),
    "sweep-gate-time-0": ([*SWEEP, "--param", "gate-time", "--values", "1e-9,0", "--out", "s"],
                          "--values", "> 0"),
    "sweep-hidden-fraction": ([*SWEEP, "--param", "hidden", "--values", "4,2.5", "--out", "s"],
                              "--values", "whole numbers >= 1"),
    "sweep-gate-time-classical": (["sweep", *TINY, "--optimizer", "newton", "--param",
                                   "gate-time", "--values", "1e-9", "--out", "s"],
                                  "--optimizer", "route to quantum"),
    "sweep-out-file": ([*SWEEP_REG, "--values", "1e-3", "--out", "afile"], "--out", "a file"),
    "sweep-out-comparison": ([*SWEEP_REG, "--values", "1e-3", "--out", "compared"], "--out",
                             "holds a comparison"),
    # reproduce
    "reproduce-out-file": ([*REPRODUCE, "--out", "afile"], "--out", "is a file"),
    "reproduce-out-empty": ([*REPRODUCE, "--out", ""], "--out", "directory path"),
    "reproduce-out-training-run": ([*REPRODUCE, "--out", "trained"], "--out", "training run"),
    "reproduce-out-comparison": ([*REPRODUCE, "--quick", "--out", "compared"], "--out",
                                 "holds a comparison"),
    "reproduce-out-unwritable": ([*REPRODUCE, "--out", "/proc/qnewton-x"], "--out", "writable"),
}


@pytest.mark.parametrize(("argv", "flag", "detail"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_before_any_work(workdir, capsys, argv, flag, detail):
    before = snapshot(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    command = argv[0]
    assert err.startswith(f"qnewton {command}: error: {flag} "), err
    assert detail in err
    assert "Traceback" not in err and "{" not in err and "--resume" not in err
    assert snapshot(workdir) == before  # nothing created, modified or removed
    assert not Path("/proc/qnewton-x").exists()
