"""The task builder shared by ``digits`` and ``mnist``: feature vectors classified by an MLP."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qnewton.tasks.base import Task, TaskConfig, architecture, init_model
from qnewton.tasks.data import stratified_split, stratified_subset
from qnewton.tasks.models import MLP


def feature_classification_task(
    config: TaskConfig,
    dataset: str,
    x: np.ndarray,
    y: np.ndarray,
    n_subset: int | None,
    hidden_default: int,
    standardize: bool,
    extra: dict[str, Any],
) -> Task:
    """Split features ``x`` ``(N, F)`` and labels ``y`` ``(N,)`` and build an MLP for them.

    ``n_subset`` keeps a stratified subset of that many samples first (``tiny``);
    ``standardize`` fits a StandardScaler on the training split only, so no statistic of the
    test split leaks into the inputs. ``dataset`` and ``extra`` go into the description.
    """
    if n_subset is not None:
        sub = stratified_subset(y, n_subset, config.seed)
        x, y = x[sub], y[sub]
    tr, te = stratified_split(y, config.test_fraction, config.seed)
    x_tr, x_te = x[tr].astype(np.float64), x[te].astype(np.float64)
    if standardize:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x_tr)
        x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    num_classes = int(y.max()) + 1
    hidden = config.hidden if config.hidden is not None else hidden_default
    in_features = x.shape[1]
    model = init_model(config.seed, lambda: MLP(in_features, hidden, num_classes))
    description = {
        "task": config.name,
        "kind": "classification",
        "dataset": dataset,
        "seed": config.seed,
        "tiny": config.tiny,
        "n_train": len(tr),
        "n_test": len(te),
        "input_shape": [in_features],
        "num_classes": num_classes,
        "class_counts_train": np.bincount(y[tr], minlength=num_classes).tolist(),
        "class_counts_test": np.bincount(y[te], minlength=num_classes).tolist(),
        "model": f"MLP {in_features}→{hidden}→{hidden}→{num_classes}, tanh",
        "hidden": hidden,
        **extra,
        **architecture(model),
    }
    return Task(
        name=config.name,
        kind="classification",
        model=model,
        x_train=torch.tensor(x_tr, dtype=torch.float32),
        y_train=torch.tensor(y[tr], dtype=torch.int64),
        x_test=torch.tensor(x_te, dtype=torch.float32),
        y_test=torch.tensor(y[te], dtype=torch.int64),
        num_classes=num_classes,
        description=description,
    )
