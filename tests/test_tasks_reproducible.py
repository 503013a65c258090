"""qnewton.tasks builds the same data and models, bit for bit, for a given configuration.

The fingerprints below were recorded from the single-module implementation (``tasks.py``, commit
ae7a7f7) before it became a package: a change to any split, tokenization, preprocessing step or
initialization changes a training trajectory and fails here.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from qnewton.tasks import TASKS, Task, TaskConfig, load_task

DATA_FIELDS = ("x_train", "y_train", "x_test", "y_test")

#: sha256 of the data tensors (in DATA_FIELDS order) and of the model's state dict (names and
#: bytes), for ``TaskConfig(name, tiny=True)``, seed 0.
RECORDED_TINY = {
    "digits": (
        "c0e77b67190c686156446571ba5c2d60ce7250e8f442952178d49b4611618c0a",
        "442d128c56a471dacc1a81deeec14f65e60d54cdee9d7109df534d160620f39f",
    ),
    "mnist": (
        "e9dd40527d1274ff8410f2f870bf7b4192b6ffa5b08ed55df9b517221feed887",
        "66b6140135d93145285a774490751fc31e53dad970eeac492a832ca475f98497",
    ),
    "text": (
        "a912e7444925dc78d95f5a6b42a7e153389c8bad166677764d3afa98de159590",
        "1c2efb65121ecec5a5244239bb622409384a1818234b9901bac26feb0a763615",
    ),
    "lm": (
        "5136e97431d0d4b6177fb7c30a5350828fe9240a47a0fbe2ef351d6c0665db76",
        "8783696ed8fa7b2f919b850545f4f5dbf087de50ffe0f3c44625778203f25956",
    ),
}


def _data_sha256(task: Task) -> str:
    h = hashlib.sha256()
    for name in DATA_FIELDS:
        h.update(getattr(task, name).contiguous().numpy().tobytes())
    return h.hexdigest()


def _model_sha256(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", TASKS)
def test_tiny_task_matches_recorded_fingerprint(name):
    task = load_task(TaskConfig(name, tiny=True))
    assert (_data_sha256(task), _model_sha256(task.model)) == RECORDED_TINY[name]


def test_default_digits_matches_recorded_values():
    task = load_task(TaskConfig("digits", seed=0))
    with torch.no_grad():
        assert task.model.fc1.weight[0, :4].tolist() == [
            -0.0009358525276184082, 0.06705544888973236, -0.10288064181804657,
            -0.09199237823486328,
        ]
        assert float(task.model.fc1.weight.double().sum()) == -0.053144246339797974
    assert task.x_train[0, :12].tolist() == [
        0.0, -0.3334764838218689, 0.5815455913543701, 0.9865230917930603, 0.9889434576034546,
        1.1149495840072632, -0.4078211784362793, -0.12026145309209824, -0.061416637152433395,
        -0.6205456256866455, 0.6703541278839111, -0.005442602559924126,
    ]
    assert task.y_train[:10].tolist() == [3, 9, 1, 3, 1, 9, 4, 4, 2, 8]
    assert task.y_test[:10].tolist() == [7, 6, 3, 7, 7, 3, 2, 8, 9, 3]


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_task_other_seed_other_task(name):
    a = load_task(TaskConfig(name, tiny=True, seed=3))
    b = load_task(TaskConfig(name, tiny=True, seed=3))
    c = load_task(TaskConfig(name, tiny=True, seed=4))
    assert _data_sha256(a) == _data_sha256(b)
    assert _model_sha256(a.model) == _model_sha256(b.model)
    assert a.description == b.description
    assert _data_sha256(a) != _data_sha256(c)
    assert _model_sha256(a.model) != _model_sha256(c.model)


def test_model_init_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_task(TaskConfig("digits", tiny=True))
    assert torch.equal(torch.rand(3), expected)
