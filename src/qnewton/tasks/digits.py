"""Task ``digits``: scikit-learn's 1797 8×8 digit images, 10 classes, by a tanh MLP.

Features are standardized with a scaler fit on the training split; ``tiny`` keeps a stratified
subset of 300 images and a width of 8 instead of 16.
"""

from __future__ import annotations

import numpy as np

from qnewton.tasks.base import Task, TaskConfig, TaskSpec
from qnewton.tasks.data import require_sklearn
from qnewton.tasks.feature_classification import feature_classification_task


def load_digits(config: TaskConfig) -> Task:
    """The ``digits`` task of ``config``: MLP 64→h→h→10."""
    require_sklearn()
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target, dtype=np.int64)
    return feature_classification_task(
        config,
        dataset="scikit-learn load_digits (1797 8x8 images, 10 classes)",
        x=x,
        y=y,
        n_subset=300 if config.tiny else None,
        hidden_default=8 if config.tiny else 16,
        standardize=True,
        extra={"preprocessing": "StandardScaler fit on the training split"},
    )


SPEC = TaskSpec(
    name="digits",
    load=load_digits,
    default_batch_size=128,
    summary="scikit-learn 8x8 digits (1797 images, 10 classes), MLP 64→16→16→10",
)
