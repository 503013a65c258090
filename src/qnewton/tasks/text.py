"""Task ``text``: which fortune file an entry comes from, by a character-level "BERT-tiny".

Classes are the non-offensive fortune files :data:`TEXT_CLASSES` (label = file), de-duplicated
(also across files, so train and test can't share an entry), at most 200 entries per class
(40 with ``tiny``) picked by the seed. Entries are character ids, truncated or padded to 128
(64) characters; the vocabulary is the training text's characters. The model is a bidirectional
Transformer encoder, d = 64 / 16 (``tiny``), 2 / 1 layers, 2 heads, FFN 2d, masked mean-pool
and a linear head.
"""

from __future__ import annotations

import numpy as np
import torch

from qnewton.tasks.base import Task, TaskConfig, TaskSpec, architecture, init_model
from qnewton.tasks.data import (
    FORTUNES_PACKAGE,
    char_vocab,
    parse_fortunes,
    read_fortune_text,
    require_sklearn,
    stratified_split,
)
from qnewton.tasks.models import PAD_ID, TransformerClassifier

#: The non-offensive fortune files used as text classes, in label order. ``gerrold.limerick`` is
#: left out (it is a second, much smaller limerick file; the classes stay one file each).
TEXT_CLASSES = ("limerick", "murphy", "startrek", "zippy")

TEXT_UNK_ID = 1  # characters not seen in the training text (0 is PAD_ID)
HEADS = 2


def load_text(config: TaskConfig) -> Task:
    """The ``text`` task of ``config``."""
    require_sklearn()
    per_class = 40 if config.tiny else 200
    max_len = 64 if config.tiny else 128
    dim = config.hidden if config.hidden is not None else (16 if config.tiny else 64)
    layers = 1 if config.tiny else 2
    heads = HEADS
    ffn = 2 * dim
    rng = np.random.default_rng(config.seed)
    texts: list[str] = []
    labels: list[int] = []
    available: dict[str, int] = {}
    seen: set[str] = set()
    for label, name in enumerate(TEXT_CLASSES):
        entries = []
        for e in parse_fortunes(read_fortune_text(name)):
            if e not in seen:  # de-duplicate (also across files) so train/test can't overlap
                seen.add(e)
                entries.append(e)
        available[name] = len(entries)
        pick = rng.permutation(len(entries))[:per_class]
        texts.extend(entries[i] for i in sorted(pick))
        labels.extend([label] * len(pick))
    y = np.asarray(labels, dtype=np.int64)
    tr, te = stratified_split(y, config.test_fraction, config.seed)
    vocab = char_vocab([texts[i] for i in tr], reserved=2)

    def encode(idx: np.ndarray) -> torch.Tensor:
        out = torch.full((len(idx), max_len), PAD_ID, dtype=torch.int64)
        for row, i in enumerate(idx):
            ids = [vocab.get(c, TEXT_UNK_ID) for c in texts[i][:max_len]]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    vocab_size = len(vocab) + 2
    num_classes = len(TEXT_CLASSES)
    model = init_model(
        config.seed,
        lambda: TransformerClassifier(vocab_size, num_classes, max_len, dim, layers, heads, ffn),
    )
    lengths = np.array([len(t) for t in texts])
    description = {
        "task": "text",
        "kind": "classification",
        "dataset": (
            f"{FORTUNES_PACKAGE} fortune files {', '.join(TEXT_CLASSES)} (label = file; "
            "gerrold.limerick left out), de-duplicated, at most "
            f"{per_class} entries per class"
        ),
        "classes": list(TEXT_CLASSES),
        "entries_available": available,
        "seed": config.seed,
        "tiny": config.tiny,
        "n_train": len(tr),
        "n_test": len(te),
        "input_shape": [max_len],
        "num_classes": num_classes,
        "class_counts_train": np.bincount(y[tr], minlength=num_classes).tolist(),
        "class_counts_test": np.bincount(y[te], minlength=num_classes).tolist(),
        "tokenization": (
            f"characters, vocabulary from the training text + PAD={PAD_ID}, UNK={TEXT_UNK_ID}; "
            f"truncated/padded to {max_len}"
        ),
        "vocab_size": vocab_size,
        "vocab": "".join(vocab),  # character of id i + 2 (ids 0, 1: PAD, UNK)
        "truncated_fraction": float((lengths > max_len).mean()),
        "max_len": max_len,
        "model": (
            f"BERT-tiny encoder: embedding {dim} + learned positions ({max_len}), {layers} "
            f"pre-LN layer(s), {heads} heads, FFN {ffn} (GELU), masked mean-pool, "
            f"linear {dim}→{num_classes}"
        ),
        "hidden": dim,
        "layers": layers,
        "heads": heads,
        "ffn": ffn,
        **architecture(model),
    }
    return Task(
        name="text",
        kind="classification",
        model=model,
        x_train=encode(tr),
        y_train=torch.tensor(y[tr], dtype=torch.int64),
        x_test=encode(te),
        y_test=torch.tensor(y[te], dtype=torch.int64),
        num_classes=num_classes,
        description=description,
    )


SPEC = TaskSpec(
    name="text",
    load=load_text,
    default_batch_size=32,
    summary="fortune-file classification (limerick, murphy, startrek, zippy), BERT-tiny",
    hidden_multiple_of=HEADS,
)
