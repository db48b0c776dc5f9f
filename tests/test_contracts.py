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
    return sorted(p for p in (ROOT / package).glob("*.py") if p.name != "__init__.py")


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
