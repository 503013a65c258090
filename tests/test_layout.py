"""The package layout's rules, checked on the source: imports point down the pipeline (no
cycles), no source file is over 600 lines, and docstrings cite the project's own method
document (docs/method.md), which must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "qnewton"
ROOT = SRC.parents[1]

#: The pipeline, bottom to top: a module may import its own component and the ones below it.
LAYERS = [
    {"registry", "validation", "files", "accounting"},
    {"curvature"},
    {"system"},
    {"estimation"},
    {"conditioning"},
    {"solvers"},
    {"calibration", "quantum"},
    {"scheduling"},
    {"stepping"},
    {"distributed"},
    {"optimizer", "options"},
    {"tasks"},
    {"training"},
    {"experiments"},
    {"reports"},
    {"bench"},
    {"cli", "__main__", "__init__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path, type_only: bool = False) -> list[tuple[str, bool]]:
    """``(module, at_top_level)`` for every qnewton import in ``path`` (TYPE_CHECKING blocks
    excluded unless ``type_only``: they never run, but still tie the modules together)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
                    and not type_only):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names if a.name.startswith("qnewton"))
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("qnewton"):
                # ``from qnewton import calibration`` imports a submodule, not a name of the
                # package's __init__
                folder = SRC.parent / child.module.replace(".", "/")
                subs = [a.name for a in child.names
                        if (folder / a.name).is_dir() or (folder / f"{a.name}.py").is_file()]
                found.extend((f"{child.module}.{name}", top) for name in subs)
                if len(subs) < len(child.names):
                    found.append((child.module, top))
            visit(child, top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))

    visit(tree, True)
    return found


def test_every_component_has_a_layer():
    names = {component(module_name(p)) for p in modules()}
    assert names <= set(RANK), f"add {sorted(names - set(RANK))} to LAYERS"


def test_imports_point_down_the_pipeline():
    wrong = []
    for path in modules():
        here = component(module_name(path))
        for target, _ in imported_modules(path):
            there = component(target)
            if there != "__init__" and RANK[there] > RANK[here]:
                wrong.append(f"{module_name(path)} imports {target}")
    assert not wrong, "imports pointing up the pipeline:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules():
    names = {module_name(p): p for p in modules()}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        # type-only imports count too: a cycle through them is a cycle of the design
        graph[name] = {t for t, top in imported_modules(path, type_only=True)
                       if top and t in names and t != name}
    # A package's __init__ re-exports its modules; a module importing its own package's __init__
    # would be a cycle too, so the graph keeps those edges.
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)


def test_no_source_file_is_over_600_lines():
    long = {module_name(p): n for p in modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long


def test_sources_cite_the_method_document_in_the_repository():
    assert (ROOT / "docs" / "method.md").is_file()
    citing = [module_name(p) for p in modules() if "DESIGN §" in p.read_text(encoding="utf-8")]
    assert not citing, f"cite docs/method.md, not a document users do not have: {citing}"
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    cited = {m for path in modules() for m in re.findall(
        r"docs/method\.md §(\d+(?:\.\d+)*)", path.read_text(encoding="utf-8"))}
    headings = {line.split()[1].rstrip(".") for line in text.splitlines()
                if line.startswith("#") and len(line.split()) > 1}
    missing = sorted(c for c in cited if c not in headings)
    assert not missing, f"sections cited but not in docs/method.md: {missing}"
