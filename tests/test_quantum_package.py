"""Structure of qnewton.quantum: imports point down the layers, the cost models use only the
standard library and qnewton's registry/validation (no torch: they are plain arithmetic that
``qnewton estimate`` and resource studies use without a model), and every QLSA model class is
registered. The QLSA *backends* (qnewton.quantum.backends) produce answers for real systems and
sit above the classical solvers; tests/test_layout.py checks them with the rest of the package."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import qnewton.quantum
import qnewton.quantum.qlsa
from qnewton.quantum import QLSA_MODELS, QLSAModel

PACKAGE_DIR = Path(qnewton.quantum.__file__).parent

#: Layers from the bottom up; a module may import only modules of earlier layers.
LAYERS = (
    ("qnewton.quantum.qlsa.model",),
    ("qnewton.quantum.qlsa.jennings", "qnewton.quantum.qlsa.dalzell", "qnewton.quantum.qlsa.costa",
     "qnewton.quantum.qlsa.dalzell_known_norm", "qnewton.quantum.qlsa.hhl",
     "qnewton.quantum.qlsa.qsvt"),
    ("qnewton.quantum.qlsa.costa_measured",),
    ("qnewton.quantum.qlsa", "qnewton.quantum.readout"),
    ("qnewton.quantum.error_budget",),
    ("qnewton.quantum.profiles",),
    ("qnewton.quantum.magic_states",),
    ("qnewton.quantum.fault_tolerant",),
    ("qnewton.quantum.block_encodings",),
    ("qnewton.quantum.logical_counts",),
    ("qnewton.quantum.qdk_estimator",),
    ("qnewton.quantum.cost",),
    ("qnewton.quantum",),
)
SHARED = {"qnewton.registry", "qnewton.validation"}
#: The one third-party import a cost model may make, lazily: the optional ``qdk`` estimator
#: (extra ``qnewton[quantum]``) behind the ``qdk-estimator`` profiles.
OPTIONAL = {"qnewton.quantum.qdk_estimator": {"qdk"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            names.add(node.module)
    return names


BACKENDS = PACKAGE_DIR / "backends"


def cost_model_files() -> list[Path]:
    return [p for p in PACKAGE_DIR.rglob("*.py") if BACKENDS not in p.parents]


def test_every_module_is_in_a_layer():
    modules = {_module_name(p) for p in cost_model_files()}
    assert modules == {m for layer in LAYERS for m in layer}


def test_imports_point_down_and_stay_inside_the_allowed_set():
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    for path in cost_model_files():
        module = _module_name(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top != "qnewton":
                assert (top in sys.stdlib_module_names or top == "__future__"
                        or top in OPTIONAL.get(module, ())), (module, name)
            elif name not in SHARED:
                assert name in rank, (module, name)  # e.g. qnewton.costs, qnewton.solvers
                assert rank[name] < rank[module], (module, name)


def test_every_qlsa_model_class_is_registered():
    registered = {type(model) for model in QLSA_MODELS.values()}
    for info in pkgutil.iter_modules(qnewton.quantum.qlsa.__path__):
        module = importlib.import_module(f"qnewton.quantum.qlsa.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, QLSAModel) and not inspect.isabstract(cls):
                assert cls in registered, cls


def test_public_api_is_exported():
    for name in qnewton.quantum.__all__:
        assert hasattr(qnewton.quantum, name), name
