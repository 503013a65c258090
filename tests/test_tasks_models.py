"""Tests for the tasks' models: shapes, masks, and per-sample gradients by batched backward."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

from qnewton.tasks import PAD_ID, TASKS, Task, TaskConfig, load_task

#: samples (windows for lm) of each tiny task: stratified subsets of 300 digits and 500 MNIST
#: images, 40 entries of each of 4 fortune files, 20 000 // 33 windows of the fortunes corpus
TINY_SAMPLES = {"digits": 300, "mnist": 500, "text": 160, "lm": 20_000 // 33}


@pytest.fixture(scope="module")
def tiny() -> dict[str, Task]:
    return {name: load_task(TaskConfig(name, tiny=True)) for name in TASKS}


@pytest.mark.parametrize("name", TASKS)
def test_tiny_task_shapes_and_dtypes(tiny, name):
    task = tiny[name]
    d = task.description
    assert task.name == name
    assert task.x_train.shape[0] == task.y_train.shape[0] == d["n_train"]
    assert task.x_test.shape[0] == task.y_test.shape[0] == d["n_test"]
    assert d["n_train"] + d["n_test"] == TINY_SAMPLES[name]
    assert task.y_train.dtype == task.y_test.dtype == torch.int64
    assert d["num_params"] == sum(p.numel() for p in task.model.parameters())
    assert d["param_sizes"] == {n: p.numel() for n, p in task.model.named_parameters()}
    assert all(p.dtype == torch.float32 for p in task.model.parameters())
    if name in ("digits", "mnist"):
        feats = 64 if name == "digits" else 784
        assert task.kind == "classification" and task.metric_name == "accuracy"
        assert task.x_train.dtype == torch.float32
        assert task.x_train.shape[1] == task.x_test.shape[1] == feats
        assert task.num_classes == 10 and d["hidden"] == 8
        assert task.model.fc1.weight.shape == (8, feats)
        assert set(task.y_train.tolist()) == set(range(10))
    elif name == "text":
        assert task.kind == "classification" and task.higher_is_better
        assert task.x_train.dtype == torch.int64
        assert task.x_train.shape[1] == d["max_len"] == 64
        assert task.num_classes == 4 and d["hidden"] == 16 and d["layers"] == 1
        assert int(task.x_train.max()) < d["vocab_size"]
        assert set(task.y_train.tolist()) == set(range(4))
    else:
        assert task.kind == "lm" and task.metric_name == "perplexity"
        assert not task.higher_is_better
        assert task.x_train.dtype == torch.int64
        assert task.x_train.shape == task.y_train.shape
        assert task.x_train.shape[1] == d["seq_len"] == 32
        assert task.num_classes == d["vocab_size"]
        assert int(torch.cat([task.x_train, task.y_train]).max()) < task.num_classes
    out = task.model(task.x_test[:5])
    assert out.shape[0] == 5 and out.shape[-1] == task.num_classes


def test_hidden_override():
    task = load_task(TaskConfig("digits", hidden=5, tiny=True))
    assert task.model.fc2.weight.shape == (5, 5)
    assert task.description["hidden"] == 5
    text = load_task(TaskConfig("text", hidden=6, tiny=True))
    assert text.model.tok.weight.shape[1] == 6 and text.description["ffn"] == 12


def test_description_is_plain_json(tiny):
    for task in tiny.values():
        assert json.loads(json.dumps(task.description)) == task.description


def test_lm_causal_mask(tiny):
    task = tiny["lm"]
    model = task.model
    x = task.x_train[:2].clone()
    t = 10
    with torch.no_grad():
        base = model(x)
        x2 = x.clone()
        x2[:, t] = (x2[:, t] + 1) % task.num_classes
        changed = model(x2)
    assert torch.equal(base[:, :t], changed[:, :t])  # the past can't see the future
    assert not torch.allclose(base[:, t:], changed[:, t:])


def test_text_padding_is_masked(tiny):
    task = tiny["text"]
    model = task.model
    lengths = (task.x_train != PAD_ID).sum(dim=1)
    i = int(torch.argmin(lengths))
    n = int(lengths[i])
    assert n < task.x_train.shape[1]
    x = task.x_train[i : i + 1]
    with torch.no_grad():
        full = model(x)
        trimmed = model(x[:, :n])  # same tokens, no padding at all
        x2 = x.clone()
        x2[0, n:] = 5  # the same positions as real tokens do change the output
        real = model(x2)
    assert torch.allclose(full, trimmed, atol=1e-5)
    assert not torch.allclose(full, real)


def _per_sample_grads_match(task: Task, x: torch.Tensor, y: torch.Tensor) -> None:
    model = copy.deepcopy(task.model).double()
    params = list(model.parameters())
    losses, _ = task.losses(model, x, y)
    s = losses.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no silent fallback
        batched = torch.autograd.grad(
            losses,
            params,
            grad_outputs=torch.eye(s, dtype=losses.dtype),
            retain_graph=True,
            is_grads_batched=True,
            allow_unused=True,
        )
    for i in range(s):
        single = torch.autograd.grad(losses[i], params, retain_graph=True, allow_unused=True)
        for b, g in zip(batched, single, strict=True):
            g = torch.zeros_like(b[i]) if g is None else g
            assert torch.allclose(b[i], g, atol=1e-10, rtol=1e-8)
    # gradients really differ between samples
    assert not torch.allclose(batched[-2][0], batched[-2][1])


def test_text_per_sample_grads_batched_equal_loop(tiny):
    task = tiny["text"]
    _per_sample_grads_match(task, task.x_train[:4, :24], task.y_train[:4])


def test_lm_per_sample_grads_batched_equal_loop(tiny):
    task = tiny["lm"]
    _per_sample_grads_match(task, task.x_train[:2, :6], task.y_train[:2, :6])
