"""The per-backend contract, read from the source with ``ast``: no framework is imported.

Each backend's module in ``backendlab/_impl`` (and in ``backendlab/bench/native``) must offer
the same public names, so the code that calls it never branches on the backend; the package's
docstring is the written contract and names each of them. The files are compared with each
other, not with a list kept here: a function added to every backend passes, one added to a
single backend fails with the files that lack it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import ROOT

from backendlab.backends import BACKEND_NAMES

PACKAGES = ("backendlab/_impl", "backendlab/bench/native")


def public_names(path: Path) -> set[str]:
    """What a backend module offers: its top-level functions, its UPPER_CASE constants, and the
    functions it re-exports from ``backendlab._impl`` (one definition per backend)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("backendlab._impl."):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper())
    return {name for name in names if not name.startswith("_")}


def backend_modules(package: str | Path) -> list[Path]:
    """Each backend's module; ``common.py`` is what they share, not a backend."""
    return sorted(p for p in (ROOT / package).glob("*.py") if p.name not in ("__init__.py", "common.py"))


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def contract_gaps(paths: list[Path]) -> list[str]:
    """One line per module that lacks a name another module of the same package offers."""
    offered = {path: public_names(path) for path in paths}
    gaps = []
    for path, names in offered.items():
        for name in sorted(set().union(*offered.values()) - names):
            elsewhere = ", ".join(p.name for p, other in offered.items() if name in other)
            gaps.append(f"{shown(path)} lacks {name} (defined in {elsewhere})")
    return gaps


@pytest.mark.parametrize("package", PACKAGES)
def test_every_backend_has_a_module(package):
    assert {p.stem for p in backend_modules(package)} >= set(BACKEND_NAMES)


@pytest.mark.parametrize("package", PACKAGES)
def test_backend_modules_offer_the_same_public_names(package):
    gaps = contract_gaps(backend_modules(package))
    assert not gaps, "backend modules differ:\n" + "\n".join(gaps)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_docstring_names_every_public_name(package):
    init = ROOT / package / "__init__.py"
    contract = ast.get_docstring(ast.parse(init.read_text())) or ""
    names = set().union(*(public_names(p) for p in backend_modules(package)))
    unwritten = sorted(name for name in names if not re.search(rf"``{re.escape(name)}[`(]", contract))
    assert not unwritten, f"{package}/__init__.py: its docstring, the written contract, does not name {unwritten}"


def test_a_gap_names_the_file_and_the_missing_names(tmp_path):
    package = tmp_path / "_impl"
    package.mkdir()
    (package / "jax.py").write_text(
        "import jax\nfrom backendlab._impl.common import sync\nCOMPILER = 'jit'\n"
        "def devices(): ...\ndef make_train_step(model): ...\ndef _private(): ...\n"
    )
    (package / "torch.py").write_text("import torch\nCOMPILER = 'eager'\ndef devices(): ...\n")
    assert public_names(package / "jax.py") == {"COMPILER", "devices", "make_train_step", "sync"}
    assert contract_gaps(backend_modules(package)) == [
        f"{package / 'torch.py'} lacks make_train_step (defined in jax.py)",
        f"{package / 'torch.py'} lacks sync (defined in jax.py)",
    ]


# --- the package's layering, read from the source with ``ast`` ------------------------------------

#: What ``backendlab/_impl`` may import from backendlab: it sits at the bottom.
IMPL_MAY_IMPORT = ("backendlab.backends", "backendlab.errors", "backendlab.workers.ranks", "backendlab.workers.threads")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / "backendlab").rglob("*.py"))}


def imported(path: Path, modules) -> set[str]:
    """The backendlab modules ``path`` imports (``from backendlab.x import y``: ``backendlab.x.y`` where
    that is a module), inside functions too."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            return  # read by type checkers only
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "backendlab")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "backendlab":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle in ``graph`` (its modules in import order, the first again at the end), or []."""
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return []


def test_impl_imports_from_backendlab_only_what_sits_below_it():
    modules = package_modules()
    allowed = {*IMPL_MAY_IMPORT, *(m for m in modules if m.startswith("backendlab._impl"))}
    wrong = {
        shown(path): sorted(imported(path, modules) - allowed)
        for name, path in modules.items()
        if name.startswith("backendlab._impl")
    }
    wrong = {where: names for where, names in wrong.items() if names}
    assert not wrong, f"backendlab/_impl imports from above it: {wrong}"


def test_the_package_has_no_import_cycle():
    """No cycle among the package's imports, those inside functions (the lazy ones) included.

    An import names its module (``from backendlab.x import y``: ``backendlab.x.y`` where that is a
    module, else ``backendlab.x``); imports under ``if TYPE_CHECKING:`` are for type checkers only.
    """
    modules = package_modules()
    graph = {name: imported(path, modules) & set(modules) for name, path in modules.items()}
    found = cycle(graph)
    assert not found, "import cycle: " + " -> ".join(found)


def test_a_cycle_is_found_and_named():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"b"}}) == []
