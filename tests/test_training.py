import json
import math

import pytest
import torch

from qnewton.files import read_jsonl
from qnewton.solvers import MachineRates
from qnewton.training import RUN_FILES, TrainConfig, TrainingError, train
from qnewton.training import loop as training_loop

SUMMARY_KEYS = {
    "task", "optimizer", "hardware", "measured_seconds", "modeled_quantum_seconds",
    "total_seconds", "quantum_solves", "classical_solves", "emulation_seconds", "status",
    "newton_solved_blocks", "measured_by_phase",
}


RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


def tiny(**kw):
    base = dict(task="digits", optimizer="qnewton", epochs=2, batch_size=64, tiny=True)
    base.update(kw)
    return TrainConfig(**base)


def test_run_writes_every_file_with_consistent_schemas(tmp_path):
    summary = train(tiny(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in RUN_FILES:
        assert (run / name).exists(), name
    assert set(summary) >= SUMMARY_KEYS
    assert summary["test_accuracy"] == read_jsonl(run / "steps.jsonl")[-1]["test_accuracy"]
    assert summary["status"] == "completed"
    assert summary["total_seconds"] == pytest.approx(
        summary["measured_seconds"] - summary["emulation_seconds"]
        + summary["modeled_quantum_seconds"])
    steps = read_jsonl(run / "steps.jsonl")
    assert steps[0]["initial"] and steps[0]["step"] == 0
    assert [r["step"] for r in steps] == list(range(summary["steps"] + 1))
    measured = [r["measured_seconds"] for r in steps]
    assert measured == sorted(measured)  # cumulative
    # the adaptive step rule (the default) logs its damping λ, step size α and ρ every step
    rule = [r["step_rule"] for r in steps[1:]]
    assert all(r["damping"] > 0 and 0 <= r["step_size"] <= 1 and "rho" in r for r in rule)
    assert any(r["accepted"] for r in rule)
    solves = read_jsonl(run / "solves.jsonl")
    blocks = len(summary["newton_solved_blocks"])
    assert len(solves) >= summary["steps"] * blocks
    assert {r["choice"] for r in solves} <= {"quantum", "classical"}
    assert summary["quantum_solves"] + summary["classical_solves"] == len(solves)
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["task"] == "digits" and "rates" in config
    assert json.loads((run / "summary.json").read_text())["steps"] == summary["steps"]


def test_quantum_optimizer_books_modeled_time_and_subtracts_emulation(tmp_path):
    summary = train(tiny(optimizer="quantum", max_steps=3), tmp_path / "q", progress=False)
    assert summary["classical_solves"] == 0 and summary["quantum_solves"] > 0
    assert summary["modeled_quantum_seconds"] > 0 and summary["emulation_seconds"] > 0
    assert summary["modeled_by_profile"].keys() == {"surface-code"}  # the default profile
    assert summary["hardware_label"] == "surface-code"


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "newton", "newton-inverse"])
def test_every_optimizer_trains(tmp_path, optimizer):
    summary = train(tiny(optimizer=optimizer, max_steps=4), tmp_path / optimizer, progress=False)
    assert summary["steps"] == 4 and summary["status"] == "completed"
    if optimizer.startswith("newton"):
        solvers = {r["solver"] for r in read_jsonl(tmp_path / optimizer / "solves.jsonl")}
        if optimizer == "newton-inverse":
            assert solvers == {"inverse"}  # the release's baseline, and nothing else
        else:
            assert solvers and "inverse" not in solvers
    else:
        assert summary["classical_solves"] == 0


@pytest.mark.parametrize("task", ["mnist", "text", "lm"])
def test_each_task_trains_with_qnewton_on_a_tiny_configuration(tmp_path, task):
    summary = train(tiny(task=task, max_steps=2, batch_size=16), tmp_path / task, progress=False)
    assert summary["steps"] == 2
    if task == "lm":
        assert math.isfinite(summary["perplexity"]) and summary["perplexity"] > 1
        assert summary["perplexity"] == pytest.approx(math.exp(summary["test_loss"]))
    else:
        assert 0 <= summary["test_accuracy"] <= 1
    assert summary["newton_solved_blocks"]


def test_resume_continues_to_the_same_result(tmp_path):
    config = tiny(epochs=2, optimizer="qnewton", momentum=0.5)
    # the same machine rates for both runs: the cost policy's choices depend on them, and a
    # calibration on a busy machine is not cached, so two runs could otherwise differ
    reference = train(config, tmp_path / "straight", progress=False, rates=RATES)

    def interrupt(row):
        if row["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", progress=False, on_step=interrupt, rates=RATES)
    cut = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert cut["status"].startswith("interrupted at step 5")
    resumed = train(config, tmp_path / "cut", resume=True, progress=False)

    assert resumed["steps"] == reference["steps"]
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    assert resumed["test_loss"] == reference["test_loss"]
    assert resumed["classical_solves"] == reference["classical_solves"]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    straight = read_jsonl(tmp_path / "straight" / "steps.jsonl")
    again = read_jsonl(tmp_path / "cut" / "steps.jsonl")
    assert [r.get("loss") for r in straight] == [r.get("loss") for r in again]
    assert len(read_jsonl(tmp_path / "cut" / "solves.jsonl")) == len(
        read_jsonl(tmp_path / "straight" / "solves.jsonl"))


def test_resume_after_a_torn_line_from_a_killed_process(tmp_path):
    config = tiny(max_steps=4)

    def stop(row):
        if row["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False, on_step=stop)
    with (tmp_path / "run" / "steps.jsonl").open("a") as fh:
        fh.write('{"step": 3, "loss": 0.')  # a kill in the middle of a write
    summary = train(config, tmp_path / "run", resume=True, progress=False)
    steps = read_jsonl(tmp_path / "run" / "steps.jsonl")
    assert [r["step"] for r in steps] == [0, 1, 2, 3, 4] and summary["steps"] == 4


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_load = training_loop.load_task

    def poisoned(config):
        task = real_load(config)
        real_losses = task.losses
        calls = {"n": 0}

        def losses(model, x, y):
            calls["n"] += torch.is_grad_enabled()  # count training steps, not evaluations
            out, outputs = real_losses(model, x, y)
            return (out * float("nan") if calls["n"] > 2 else out), outputs

        task.losses = losses
        return task

    monkeypatch.setattr(training_loop, "load_task", poisoned)
    with pytest.raises(TrainingError, match="non-finite loss"):
        train(tiny(max_steps=6), tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"].startswith("stopped: non-finite loss")
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert checkpoint["state"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_directory_errors_are_clear_and_write_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrainingError, match="not a directory|not writable"):
        train(tiny(max_steps=1), blocker, progress=False)
    with pytest.raises(TrainingError, match="not writable|not a directory"):
        train(tiny(max_steps=1), blocker / "sub", progress=False)
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(tiny(max_steps=1), tmp_path / "fresh", resume=True, progress=False)
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").iterdir())
    train(tiny(max_steps=1), tmp_path / "done", progress=False)
    with pytest.raises(TrainingError, match="already holds a run"):
        train(tiny(max_steps=1), tmp_path / "done", progress=False)
    with pytest.raises(TrainingError, match="different settings"):
        train(tiny(max_steps=1, lr=0.01), tmp_path / "done", resume=True, progress=False)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"task": "cifar"}, "task must be one of"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"hardware": "abacus"}, "hardware must be one of"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"solvers": ("qr",)}, "solvers must be one of"),
        ({"grouping": "layer"}, "grouping must be one of"),
        ({"kappa_method": "guess"}, "kappa_method must be one of"),
        ({"qlsa_backend": "quantum-annealer"}, "qlsa_backend must be one of"),
    ],
)
def test_invalid_configuration_names_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("existed", [False, True])
def test_a_refusal_at_the_first_step_leaves_the_out_folder_reusable(tmp_path, monkeypatch,
                                                                    existed):
    """A setting refused only when the first step runs (here: the optimizer's step raises)
    used to leave config.json and empty logs without a checkpoint: a folder that could be
    neither resumed nor reused."""
    import qnewton.training.loop as loop

    out = tmp_path / "run"
    if existed:
        out.mkdir()
    real_build = loop.build_optimizer

    class Refusing:
        def __init__(self, inner):
            self.inner = inner

        def step(self, closure):
            raise ValueError("late refusal at the first step")

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(loop, "build_optimizer", lambda *a: Refusing(real_build(*a)))
    with pytest.raises(ValueError, match="late refusal"):
        train(tiny(), out, progress=False, rates=RATES)
    assert out.exists() is existed and (not existed or list(out.iterdir()) == [])
    monkeypatch.setattr(loop, "build_optimizer", real_build)
    summary = train(tiny(), out, progress=False, rates=RATES)  # the same --out works
    assert summary["status"] == "completed"
