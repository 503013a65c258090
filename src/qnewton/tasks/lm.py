"""Task ``lm``: next-character prediction by a "GPT-tiny".

The corpus is the ``fortunes`` file (its first 200 000 characters; 20 000 with ``tiny``) or,
with ``corpus="pydoc"`` or when the fortunes package is missing, ``pydoc_data.topics``. It is cut
into non-overlapping windows of 65 (33) characters: inputs are the first 64 (32), targets the
last 64 (32). Windows are split by a seeded shuffle (no stratification); the vocabulary is the
training windows' characters. The model is a causal Transformer decoder, d = 64 / 16 (``tiny``),
2 / 1 layers, 2 heads, FFN 2d, untied output head. A sample is a token, so ``S = B·T``.
"""

from __future__ import annotations

import numpy as np
import torch

from qnewton.tasks.base import Task, TaskConfig, TaskSpec, architecture, init_model
from qnewton.tasks.data import (
    FORTUNES_PACKAGE,
    char_vocab,
    fortunes_installed,
    pydoc_corpus,
    read_fortune_text,
)
from qnewton.tasks.models import CharGPT

LM_UNK_ID = 0  # characters not seen in the training windows (no padding needed)
HEADS = 2


def load_lm(config: TaskConfig) -> Task:
    """The ``lm`` task of ``config``."""
    corpus = config.corpus
    if corpus == "auto":
        corpus = "fortunes" if fortunes_installed() else "pydoc"
    n_chars = 20_000 if config.tiny else 200_000
    seq_len = 32 if config.tiny else 64
    dim = config.hidden if config.hidden is not None else (16 if config.tiny else 64)
    layers = 1 if config.tiny else 2
    heads = HEADS
    ffn = 2 * dim
    if corpus == "fortunes":
        full = read_fortune_text("fortunes")
        source = f"{FORTUNES_PACKAGE} 'fortunes' file ({len(full)} characters)"
    else:
        full = pydoc_corpus()
        source = f"pydoc_data.topics ({len(full)} characters, topics in sorted key order)"
    text = full[:n_chars]
    window = seq_len + 1
    n_windows = len(text) // window
    n_test = round(n_windows * config.test_fraction)
    if n_test < 1 or n_windows - n_test < 1:
        raise ValueError(
            f"test_fraction={config.test_fraction} leaves an empty split of {n_windows} windows"
        )
    order = np.random.default_rng(config.seed).permutation(n_windows)
    te, tr = np.sort(order[:n_test]), np.sort(order[n_test:])
    chunks = [text[i * window : (i + 1) * window] for i in range(n_windows)]
    vocab = char_vocab([chunks[i] for i in tr], reserved=1)
    vocab_size = len(vocab) + 1

    def encode(idx: np.ndarray) -> torch.Tensor:
        return torch.tensor(
            [[vocab.get(c, LM_UNK_ID) for c in chunks[i]] for i in idx], dtype=torch.int64
        )

    seq_tr, seq_te = encode(tr), encode(te)
    model = init_model(config.seed, lambda: CharGPT(vocab_size, seq_len, dim, layers, heads, ffn))
    description = {
        "task": "lm",
        "kind": "lm",
        "corpus": corpus,
        "dataset": f"{source}, first {len(text)} characters",
        "seed": config.seed,
        "tiny": config.tiny,
        "chars_used": n_windows * window,
        "seq_len": seq_len,
        "windows": (
            f"non-overlapping windows of {window} characters: inputs = first {seq_len}, "
            f"targets = last {seq_len}; split by window (seeded shuffle, no stratification)"
        ),
        "n_train": len(tr),
        "n_test": len(te),
        "tokens_train": len(tr) * seq_len,
        "tokens_test": len(te) * seq_len,
        "input_shape": [seq_len],
        "num_classes": vocab_size,
        "vocab_size": vocab_size,
        "vocab": "".join(vocab),  # character of id i + 1 (id 0: UNK)
        "tokenization": f"characters, vocabulary from the training windows + UNK={LM_UNK_ID}",
        "model": (
            f"GPT-tiny decoder: embedding {dim} + learned positions ({seq_len}), {layers} "
            f"causal pre-LN layer(s), {heads} heads, FFN {ffn} (GELU), final LayerNorm, "
            f"untied head {dim}→{vocab_size}"
        ),
        "hidden": dim,
        "layers": layers,
        "heads": heads,
        "ffn": ffn,
        **architecture(model),
    }
    return Task(
        name="lm",
        kind="lm",
        model=model,
        x_train=seq_tr[:, :-1].contiguous(),
        y_train=seq_tr[:, 1:].contiguous(),
        x_test=seq_te[:, :-1].contiguous(),
        y_test=seq_te[:, 1:].contiguous(),
        num_classes=vocab_size,
        description=description,
    )


SPEC = TaskSpec(
    name="lm",
    load=load_lm,
    default_batch_size=16,
    summary="character language model on the fortunes file (pydoc_data fallback), GPT-tiny",
    hidden_multiple_of=HEADS,
)
