"""`qnewton train` and `qnewton estimate` with bad input: exit status 2, a message naming the flag
and what is allowed, no traceback, and nothing done: no run directory or file created, no file
changed, no calibration started."""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import qnewton.training
from qnewton import calibration
from qnewton.cli import main
from qnewton.solvers import MachineRates
from qnewton.training import TrainConfig, train

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)
RUN = ["--task", "digits", "--tiny", "--max-steps", "4", "--batch-size", "64", "--no-progress"]
# the library's names of settings whose flags are spelled differently; none may reach a user
INTERNAL_NAMES = {f for f in TrainConfig.__dataclass_fields__ if "_" in f} | {
    "gate_time_s", "classical_solvers", "max_dense_bytes"}


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Bad input must be refused before any work: calibrating the machine fails the test, and
    the command runs in an empty directory that must stay empty."""

    def calibrate(*args, **kwargs):
        raise AssertionError("calibration started before the input was checked")

    monkeypatch.setattr(calibration, "calibrate", calibrate)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert list(cwd.iterdir()) == []


def run_cli(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, out, err, flag, base):
    assert code == 2, err
    assert "Traceback" not in err and out == ""
    assert flag in err, err
    text = err.replace(str(base), "<tmp>")
    leaked = [name for name in INTERNAL_NAMES if re.search(rf"\b{name}\b", text)]
    assert not leaked, (leaked, err)


def snapshot(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).iterdir())}


TRAIN_CASES = [
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--lr", "-1"], "--lr must be a finite number > 0"),
    (["--reg", "nan"], "--reg must be a finite number >= 0"),
    (["--reg", "-0.5"], "--reg must be a finite number >= 0"),
    (["--eps", "1"], "--eps must be a finite number > 0 and < 1"),
    (["--eps", "nan"], "--eps must be a finite number > 0 and < 1"),
    (["--gate-time", "inf"], "--gate-time must be a finite number > 0"),
    (["--gate-time", "0"], "--gate-time must be a finite number > 0"),
    (["--kappa-threshold", "nan"], "--kappa-threshold must be a finite number >= 1"),
    (["--kappa-threshold", "0.5"], "--kappa-threshold must be a finite number >= 1"),
    (["--alpha", "0"], "--alpha must be a finite number > 0"),
    (["--momentum", "1"], "--momentum must be a finite number >= 0 and < 1"),
    (["--momentum", "nan"], "--momentum must be a finite number >= 0 and < 1"),
    (["--clip", "-1"], "--clip must be a finite number >= 0"),
    (["--clip", "nan"], "--clip must be a finite number >= 0"),
    (["--prune-ratio", "0"], "--prune-ratio must be a finite number > 0 and <= 1"),
    (["--prune-ratio", "1.5"], "--prune-ratio must be a finite number > 0 and <= 1"),
    (["--prune-count", "0"], "--prune-count must be an integer >= 1"),
    (["--prune-ratio", "0.5", "--prune-count", "3"], "--prune-ratio and --prune-count"),
    (["--shots", "0"], "--shots must be an integer >= 1"),
    (["--max-block-bytes", "0"], "--max-block-bytes must be an integer >= 1"),
    (["--exact-kappa-max-n", "-1"], "--exact-kappa-max-n must be an integer >= 0"),
    (["--hidden", "0"], "--hidden must be an integer >= 1"),
    (["--task", "text", "--hidden", "3"], "--hidden must be a multiple of 2"),
    (["--epochs", "0"], "--epochs must be an integer >= 1"),
    (["--max-steps", "-3"], "--max-steps must be an integer >= 1"),
    (["--seed", "-1"], "--seed must be an integer in [0, 4294967295]"),
    (["--seed", str(2**32)], "--seed must be an integer in [0, 4294967295]"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["--batch-size", "100000"], "--batch-size must be at most the size of the training set, 240"),
    (["--epochs", "abc"], "argument --epochs: invalid int value"),
    (["--task", "cifar"], "--task must be one of digits, mnist, text, lm"),
    (["--optimizer", "lbfgs"], "--optimizer must be one of sgd,"),
    (["--hardware", "abacus"], "--hardware must be one of paper,"),
    (["--curvature", "exact"], "--curvature must be one of auto, hessian, ggn, fisher"),
    (["--grouping", "layer"], "--grouping must be one of auto, tensor, module, model"),
    (["--reg-scheme", "tikhonov"], "--reg-scheme must be one of max-entry,"),
    (["--policy", "fastest"], "--policy must be one of cost,"),
    (["--solvers", "cg,qr"], "--solvers must be one of cholesky,"),
    (["--solvers", ","], "--solvers needs a comma-separated list"),
    (["--qlsa", "grover"], "--qlsa must be one of jennings,"),
    (["--qlsa-backend", "annealer"], "--qlsa-backend must be one of emulated"),
    (["--readout", "psychic"], "--readout must be one of state, vector"),
    (["--kappa-method", "guess"], "--kappa-method must be one of exact,"),
    (["--nproc", "0"], "--nproc must be an integer >= 1"),
    (["--curvature-batch", "100000"], "--curvature-batch must be at most the mini-batch size, 64"),
    (["--threads", "0"], "--threads must be an integer >= 1"),
    (["--nproc", "4", "--batch-size", "3"], "--batch-size must be at least the number of ranks"),
]


@pytest.mark.parametrize("extra,message", TRAIN_CASES,
                         ids=[" ".join(extra) for extra, _ in TRAIN_CASES])
def test_train_refuses_a_bad_setting_before_any_work(tmp_path, capsys, no_work, extra, message):
    code, out, err = run_cli(capsys, ["train", *RUN, *extra, "--out", str(tmp_path / "run")])
    assert_refused(code, out, err, message, tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra,message", [
    (["--dampng", "1"], "qnewton train: error: unrecognized arguments: --dampng 1 (--dampng: did "
                        "you mean --damping?) (see `qnewton train --help`)"),
    (["--bogus"], "qnewton train: error: unrecognized arguments: --bogus (see `qnewton train "
                  "--help`)"),
    (["--epochs", "abc"], "qnewton train: error: argument --epochs: invalid int value: 'abc' "
                          "(see `qnewton train --help`)"),
], ids=["misspelt", "unknown", "not-an-int"])
def test_a_usage_error_is_one_line_naming_the_command(tmp_path, capsys, no_work, extra, message):
    """argparse's own errors (an unknown flag, a value of the wrong type): one line, from the
    command they were given to (an unknown flag used to be reported by `qnewton` under its
    top-level usage), with the flag a misspelt one most likely meant."""
    code, out, err = run_cli(capsys, ["train", *RUN, *extra, "--out", str(tmp_path / "run")])
    assert_refused(code, out, err, message, tmp_path)
    assert err == message + "\n"


def test_an_empty_out_is_refused_not_read_as_the_current_directory(capsys, no_work):
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", ""])
    assert_refused(code, out, err, "--out must be a directory path, got ''", no_work)


def test_out_must_be_a_directory(tmp_path, capsys, no_work):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(blocker)])
    assert_refused(code, out, err, f"--out {blocker} exists and is not a directory", tmp_path)
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(blocker / "run")])
    assert_refused(code, out, err, f"{blocker} is a file, not a directory", tmp_path)
    assert blocker.read_text() == "keep me"


def test_an_unwritable_out_is_refused(tmp_path, capsys, no_work, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores the mode: deny as the kernel does for others
        real_access = os.access

        def access(path, mode, *args, **kwargs):
            if Path(path) == locked and mode & os.W_OK:
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(locked / "run")])
    assert_refused(code, out, err, f"--out {locked / 'run'} is not writable", tmp_path)
    locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_files_of_an_earlier_run_are_never_overwritten(tmp_path, capsys, no_work):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "summary.json").write_text('{"status": "completed"}')
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(partial)])
    assert_refused(code, out, err, "--out", tmp_path)
    assert "already holds run files (summary.json)" in err
    assert snapshot(partial) == {"summary.json": hashlib.sha256(
        b'{"status": "completed"}').hexdigest()}


def test_resume_without_a_run_is_refused(tmp_path, capsys, no_work):
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(tmp_path / "run"), "--resume"])
    assert_refused(code, out, err, "--resume: no checkpoint in", tmp_path)
    assert not (tmp_path / "run").exists()


# -- an existing run --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run of 4 steps stopped after step 2 (as by Ctrl-C): resumable with ``RUN``."""
    out = tmp_path_factory.mktemp("saved") / "run"

    def stop(row):
        if row["step"] == 2:
            raise KeyboardInterrupt

    config = TrainConfig(task="digits", tiny=True, max_steps=4, batch_size=64)
    with pytest.raises(KeyboardInterrupt):
        train(config, out, progress=False, on_step=stop, rates=RATES)
    return out


@pytest.fixture
def run_copy(saved_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(saved_run, out)
    return out


def test_an_existing_run_needs_resume(run_copy, tmp_path, capsys, no_work):
    before = snapshot(run_copy)
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(run_copy)])
    assert_refused(code, out, err, "already holds a run; pass --resume", tmp_path)
    assert snapshot(run_copy) == before


def test_resume_with_other_settings_names_them_as_flags(run_copy, tmp_path, capsys, no_work):
    before = snapshot(run_copy)
    code, out, err = run_cli(capsys, ["train", *RUN, "--lr", "0.01", "--momentum", "0.5",
                                      "--out", str(run_copy), "--resume"])
    assert_refused(code, out, err, "--resume with different settings", tmp_path)
    assert "--lr None -> 0.01" in err and "--momentum 0.0 -> 0.5" in err
    assert snapshot(run_copy) == before


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_first_line(path):
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) >= 2
    path.write_text('{"step": 0, "loss": 0.\n' + "".join(lines[1:]))


def _checkpoint_of_another_model(path):
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["model"] = {k: torch.zeros(3) for k in checkpoint["model"]}
    torch.save(checkpoint, path)


def _torn_steps_and_corrupt_solves(run):
    # steps.jsonl alone would be repaired (its torn last line dropped): it must not be, since
    # solves.jsonl stops the resume
    with (run / "steps.jsonl").open("a") as fh:
        fh.write('{"step": 3, "lo')
    _corrupt_first_line(run / "solves.jsonl")


DAMAGE = {
    "checkpoint truncated": (lambda r: _truncate(r / "checkpoint.pt"), "checkpoint.pt",
                             "the checkpoint cannot be read"),
    "checkpoint garbage": (lambda r: (r / "checkpoint.pt").write_bytes(b"\x00garbage" * 64),
                           "checkpoint.pt", "the checkpoint cannot be read"),
    "checkpoint empty": (lambda r: (r / "checkpoint.pt").write_bytes(b""), "checkpoint.pt",
                         "the checkpoint cannot be read"),
    "checkpoint of another model": (lambda r: _checkpoint_of_another_model(r / "checkpoint.pt"),
                                    "checkpoint.pt", "the checkpoint does not fit this run"),
    "checkpoint not a dict": (lambda r: torch.save([1, 2], r / "checkpoint.pt"), "checkpoint.pt",
                              "not a qnewton checkpoint"),
    "checkpoint removed": (lambda r: (r / "checkpoint.pt").unlink(), "--resume",
                           "holds a run but no checkpoint.pt"),
    "config truncated": (lambda r: _truncate(r / "config.json"), "config.json",
                         "is not valid JSON"),
    "config not a run config": (lambda r: (r / "config.json").write_text("[1, 2]"),
                                "config.json", "not a qnewton run config"),
    "config removed": (lambda r: (r / "config.json").unlink(), "config.json", "missing"),
    "steps corrupt": (lambda r: _corrupt_first_line(r / "steps.jsonl"), "steps.jsonl",
                      "line 1 is not valid JSON and is not the last line"),
    "steps removed": (lambda r: (r / "steps.jsonl").unlink(), "steps.jsonl",
                      "is missing but the checkpoint is at step 2"),
    "steps not objects": (lambda r: (r / "steps.jsonl").write_text("[1]\n[2]\n"), "steps.jsonl",
                          "line 1 is not a JSON object"),
    "solves corrupt, steps torn": (_torn_steps_and_corrupt_solves, "solves.jsonl",
                                   "line 1 is not valid JSON"),
    "events binary": (lambda r: (r / "events.jsonl").write_bytes(b"\xff\xfe\x00\x01"),
                      "events.jsonl", "cannot be read"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_of_a_damaged_run_names_the_file_and_changes_nothing(run_copy, tmp_path, capsys,
                                                                    no_work, damage):
    spoil, name, what = DAMAGE[damage]
    spoil(run_copy)
    before = snapshot(run_copy)
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(run_copy), "--resume"])
    assert_refused(code, out, err, name, tmp_path)
    assert what in err
    assert re.search(r"restore it|start a new run|choose another --out|start again", err), err
    assert snapshot(run_copy) == before


def test_the_undamaged_copy_resumes(run_copy, capsys, monkeypatch):
    """The ground truth of the cases above: the same command on the undamaged run succeeds."""
    monkeypatch.setattr(calibration, "calibrate", lambda *a, **k: RATES)  # resume uses the saved
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(run_copy), "--resume"])
    assert code == 0, err
    steps = [json.loads(line) for line in (run_copy / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == [0, 1, 2, 3, 4]


# -- Ctrl-C -----------------------------------------------------------------------------------
def test_ctrl_c_exits_130_without_a_traceback_and_the_run_resumes(tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setattr(calibration, "calibrate", lambda *a, **k: RATES)
    real_train = qnewton.training.train

    def interrupted_after_one_step(config, out, **kwargs):
        def stop(row):
            if row["step"] == 1:
                raise KeyboardInterrupt

        return real_train(config, out, on_step=stop, **kwargs)

    monkeypatch.setattr(qnewton.training, "train", interrupted_after_one_step)
    argv = ["train", *RUN, "--max-steps", "2", "--out", str(tmp_path / "run")]
    code, out, err = run_cli(capsys, argv)
    assert code == 130
    assert "Traceback" not in err
    assert "interrupted; completed steps are saved" in err and "--resume" in err
    monkeypatch.setattr(qnewton.training, "train", real_train)
    code, out, err = run_cli(capsys, [*argv, "--resume"])
    assert code == 0, err
    steps = [json.loads(line)
             for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == [0, 1, 2]


def test_ctrl_c_before_the_first_step_says_there_is_nothing_to_resume(tmp_path, capsys,
                                                                      monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(qnewton.training, "train", interrupted)
    code, out, err = run_cli(capsys, ["train", *RUN, "--out", str(tmp_path / "run")])
    assert code == 130
    assert "Traceback" not in err
    assert "nothing to resume" in err


# -- estimate ---------------------------------------------------------------------------------
SYSTEM = ["--n", "100", "--d", "5", "--kappa", "20"]
ESTIMATE_CASES = [
    (["--n", "0", "--d", "1", "--kappa", "2"], "--n must be a positive integer"),
    (["--n", "1.5", "--d", "1", "--kappa", "2"], "--n must be a positive integer"),
    (["--n", "nan", "--d", "1", "--kappa", "2"], "--n must be a positive integer"),
    (["--n", "inf", "--d", "1", "--kappa", "2"], "--n must be a positive integer"),
    (["--n", "1e300", "--d", "1", "--kappa", "2"], "--n must be a positive integer (at most"),
    (["--n", "10", "--d", "nan", "--kappa", "2"], "--d must be a positive integer"),
    (["--n", "10", "--d", "0", "--kappa", "2"], "--d must be a positive integer"),
    (["--n", "10", "--d", "11", "--kappa", "2"], "--d must be <= --n"),
    (["--n", "10", "--d", "2", "--kappa", "nan"], "--kappa must be a finite number >= 1"),
    (["--n", "10", "--d", "2", "--kappa", "inf"], "--kappa must be a finite number >= 1"),
    (["--n", "10", "--d", "2", "--kappa", "0.5"], "--kappa must be a finite number >= 1"),
    ([*SYSTEM, "--rank", "0"], "--rank must be a positive integer"),
    ([*SYSTEM, "--rank", "inf"], "--rank must be a positive integer"),
    ([*SYSTEM, "--eps", "0"], "--eps must be a finite number > 0 and < 1"),
    ([*SYSTEM, "--eps", "nan"], "--eps must be a finite number > 0 and < 1"),
    ([*SYSTEM, "--alpha", "-1"], "--alpha must be a finite number > 0"),
    ([*SYSTEM, "--alpha", "inf"], "--alpha must be a finite number > 0"),
    ([*SYSTEM, "--gate-time", "0"], "--gate-time must be a finite number > 0"),
    ([*SYSTEM, "--gate-time", "nan"], "--gate-time must be a finite number > 0"),
    ([*SYSTEM, "--qlsa", "grover"], "--qlsa must be one of jennings,"),
    ([*SYSTEM, "--hardware", "abacus"], "--hardware must be one of paper,"),
    ([*SYSTEM, "--readout", "psychic"], "--readout must be one of state, vector"),
    ([*SYSTEM, "--policy", "fastest"], "--policy must be one of cost,"),
    ([*SYSTEM, "--solvers", "qr"], "--solvers must be one of cholesky,"),
    ([*SYSTEM, "--solvers", ","], "--solvers must name at least one of cholesky,"),
    ([*SYSTEM, "--solvers", "woodbury"], "--solvers woodbury leaves no classical solver"),
    (["--n", "abc", "--d", "1", "--kappa", "2"], "argument --n: invalid float value"),
    (["--d", "1", "--kappa", "2"], "the following arguments are required: --n"),
]


@pytest.mark.parametrize("args,message", ESTIMATE_CASES,
                         ids=[" ".join(args) for args, _ in ESTIMATE_CASES])
def test_estimate_refuses_a_bad_argument_before_any_work(tmp_path, capsys, no_work, args,
                                                         message):
    code, out, err = run_cli(capsys, ["estimate", *args])
    assert_refused(code, out, err, message, tmp_path)


def test_estimate_beyond_the_cost_models_range_is_an_error_not_a_traceback(capsys,
                                                                           monkeypatch):
    monkeypatch.setattr(calibration, "calibrate", lambda *a, **k: RATES)
    good = ["--n", "1e15", "--d", "1e15", "--rank", "1e15", "--readout", "vector",
            "--hardware", "surface-code"]
    code, out, err = run_cli(capsys, ["estimate", *good, "--kappa", "1e6", "--json"])
    assert code == 0, err
    code, out, err = run_cli(capsys, ["estimate", *good, "--kappa", "1e300"])
    assert code == 2 and out == "" and "Traceback" not in err
    assert "beyond the range of the cost models" in err and "--kappa" in err


# -- validate-qlsa --out ----------------------------------------------------------------------
@pytest.mark.parametrize("target, message", [
    ("missing/rows.json", "the directory"),
    ("a-directory", "must be a file path, got the directory"),
])
def test_validate_qlsa_refuses_a_bad_out_before_the_work(tmp_path, capsys, monkeypatch, target,
                                                         message):
    import qnewton.cli.validate_qlsa as command

    def no_validation(*args, **kwargs):
        raise AssertionError("the validation ran before --out was checked")

    monkeypatch.setattr(command, "validate_qlsa", no_validation)
    (tmp_path / "a-directory").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, ["validate-qlsa", "--sizes", "4", "--kappas", "10",
                                      "--out", str(tmp_path / target)])
    assert code == 2 and out == "" and "Traceback" not in err
    assert "--out" in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .tmp left behind


def test_a_failed_atomic_write_leaves_no_tmp_file(tmp_path):
    from qnewton.files import write_json_atomic

    target = tmp_path / "rows.json"
    target.mkdir()  # os.replace onto a directory fails after the .tmp is written
    with pytest.raises(OSError):
        write_json_atomic(target, {"rows": []})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json"]
