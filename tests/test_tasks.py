"""Tests for qnewton.tasks: the registry, configurations, per-sample losses and evaluation.

Data and splits: test_tasks_data.py; models: test_tasks_models.py; bit-for-bit reproducibility:
test_tasks_reproducible.py.
"""

from __future__ import annotations

import ast
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import qnewton.tasks
from qnewton.registry import UnknownNameError
from qnewton.tasks import TASKS, Task, TaskConfig, load_task


@pytest.fixture(scope="module")
def tiny() -> dict[str, Task]:
    return {name: load_task(TaskConfig(name, tiny=True)) for name in TASKS}


# --------------------------------------------------------------------------------------------
# Registry and package layout
# --------------------------------------------------------------------------------------------


def test_registry_lists_the_tasks_with_their_default_batch_sizes():
    assert TASKS.names() == ("digits", "mnist", "text", "lm")
    assert {name: spec.default_batch_size for name, spec in TASKS.items()} == {
        "digits": 128,
        "mnist": 128,
        "text": 32,
        "lm": 16,
    }
    assert all(spec.name == name for name, spec in TASKS.items())


def test_unknown_task_lists_the_registered_names():
    expected = "task must be one of digits, mnist, text, lm; got 'cifar'"
    with pytest.raises(UnknownNameError) as info:
        TaskConfig("cifar")
    assert str(info.value) == expected
    with pytest.raises(UnknownNameError) as info:
        TASKS["cifar"]
    assert str(info.value) == expected


@pytest.mark.parametrize("name", TASKS)
def test_load_task_builds_the_registered_task(tiny, name):
    task = tiny[name]
    assert task.name == task.description["task"] == name
    with pytest.raises(TypeError, match="TaskConfig"):
        load_task(name)  # type: ignore[arg-type]


#: Within qnewton.tasks a module may import only modules of a lower layer (imports point down).
LAYERS = {
    "base": 0,
    "data": 0,
    "models.mlp": 0,
    "models.transformer": 0,
    "models": 1,
    "feature_classification": 2,
    # task modules (digits, mnist, text, lm, ...): 3
    "": 4,  # the package itself: registers the task modules
}
TASK_LAYER = 3


def _package_modules(root: Path) -> dict[Path, str]:
    """File → dotted name inside the package (``""`` for the package's ``__init__``)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        modules[path] = ".".join(p for p in parts if p != "__init__")
    return modules


def _imported_package_modules(tree: ast.AST, names: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "qnewton imports are absolute"
            if node.module == "qnewton.tasks":
                found |= {a.name for a in node.names if a.name in names}
            elif node.module and node.module.startswith("qnewton.tasks."):
                found.add(node.module.removeprefix("qnewton.tasks."))
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("qnewton.tasks.")
                for a in node.names
                if a.name.startswith("qnewton.tasks.")
            }
    return found


def test_imports_within_the_package_point_down():
    modules = _package_modules(Path(qnewton.tasks.__file__).parent)
    names = set(modules.values())
    for path, name in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target in _imported_package_modules(tree, names):
            assert LAYERS.get(target, TASK_LAYER) < LAYERS.get(name, TASK_LAYER), (
                f"qnewton.tasks.{name or '__init__'} imports qnewton.tasks.{target}"
            )


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": 0}, "hidden must be an integer >= 1"),
        ({"hidden": 2.5}, "hidden must be an integer >= 1"),
        ({"hidden": True}, "hidden must be an integer >= 1"),
        ({"name": "text", "hidden": 15}, "hidden must be a multiple of 2 for task 'text'"),
        ({"name": "lm", "hidden": 7}, "hidden must be a multiple of 2 for task 'lm'"),
        ({"seed": -1}, "seed must be an integer in"),
        ({"seed": 2**32}, "seed must be an integer in"),
        ({"seed": True}, "seed must be an integer in"),
        ({"tiny": 1}, "tiny must be True or False"),
        ({"test_fraction": 0.0}, "test_fraction must be"),
        ({"test_fraction": 1.0}, "test_fraction must be"),
        ({"test_fraction": float("nan")}, "test_fraction must be"),
        ({"corpus": "wiki"}, "corpus must be one of auto, fortunes, pydoc"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TaskConfig(**kwargs)


def test_config_stores_plain_numbers():
    config = TaskConfig("digits", hidden=np.int64(5), seed=np.uint32(3),
                        test_fraction=np.float32(0.25))
    assert config == TaskConfig("digits", hidden=5, seed=3, test_fraction=0.25)
    assert type(config.hidden) is int and type(config.seed) is int
    assert type(config.test_fraction) is float
    assert TaskConfig("digits", hidden=15).hidden == 15  # odd widths are fine for the MLPs


# --------------------------------------------------------------------------------------------
# Losses, evaluation
# --------------------------------------------------------------------------------------------


def _hand_losses_and_rows(task: Task, x: torch.Tensor, y: torch.Tensor):
    """Per-sample losses and output rows, one example (lm: one window) per forward pass."""
    losses, rows = [], []
    for i in range(x.shape[0]):
        logits = task.model(x[i : i + 1])[0]  # (C,) or (T, V)
        for t, row in enumerate(logits.reshape(-1, task.num_classes)):
            target = y[i] if task.kind == "classification" else y[i, t]
            losses.append(-torch.log_softmax(row, dim=0)[target])
            rows.append(row)
    return torch.stack(losses), torch.stack(rows)


@pytest.mark.parametrize("name", TASKS)
def test_losses_are_per_sample_cross_entropy(tiny, name):
    task = tiny[name]
    x, y = task.x_train[:4], task.y_train[:4]
    with torch.no_grad():
        losses, out = task.losses(task.model, x, y)
        expected_losses, expected_rows = _hand_losses_and_rows(task, x, y)
    s = 4 if task.kind == "classification" else 4 * x.shape[1]  # lm: row b·T + t
    assert losses.shape == (s,) and out.shape == (s, task.num_classes)
    assert torch.allclose(out, expected_rows, atol=1e-5)
    assert torch.allclose(losses, expected_losses, atol=1e-5)


@pytest.mark.parametrize("name", TASKS)
def test_evaluate_matches_hand_computed_metric(tiny, name):
    task = tiny[name]
    x = task.x_test
    with torch.no_grad():
        logits = task.model(x).reshape(-1, task.num_classes).double()
    if task.kind == "classification":
        # labels chosen so that exactly the first half of the predictions are right
        pred = logits.argmax(dim=1)
        n = len(pred)
        y = pred.clone()
        y[n // 2 :] = (pred[n // 2 :] + 1) % task.num_classes
    else:
        y = task.y_test
    expected_loss = float(F.cross_entropy(logits, y.reshape(-1)))
    full = task.evaluate(task.model, x, y, batch_size=10_000)
    batched = task.evaluate(task.model, x, y, batch_size=7)
    for result in (full, batched):
        assert result.keys() == {"loss", task.metric_name}
        assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
        if task.kind == "classification":
            assert result["accuracy"] == (n // 2) / n
        else:
            assert result["perplexity"] == pytest.approx(math.exp(expected_loss), rel=1e-5)


def test_evaluate_rejects_bad_batches(tiny):
    task = tiny["digits"]
    with pytest.raises(ValueError, match="batch_size"):
        task.evaluate(task.model, task.x_test, task.y_test, batch_size=0)
    with pytest.raises(ValueError, match="at least one sample"):
        task.evaluate(task.model, task.x_test[:0], task.y_test[:0])


def test_task_kind_is_checked(tiny):
    task = tiny["digits"]
    with pytest.raises(ValueError, match="kind must be one of classification, lm"):
        Task("digits", "regression", task.model, task.x_train, task.y_train, task.x_test,
             task.y_test, 10)


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
