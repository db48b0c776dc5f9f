"""Load a user's function named as ``path/to/file.py:function`` or ``package.module:function``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backendlab.errors import UsageError


def is_callable_spec(spec: str) -> bool:
    return ":" in spec


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """The function that ``spec`` names; ``what`` ("model", "data") words the errors."""
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name:
        raise UsageError(f"{what} {spec!r} must look like path/to/file.py:function or package.module:function")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"{what} file {target!r} does not exist")
        # A name unique per file, so two user files called model.py do not collide.
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        module_spec = importlib.util.spec_from_file_location(f"_backendlab_user_{digest}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise UsageError(f"{what} file {target!r} failed to import: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UsageError(f"{what} module {target!r} cannot be imported: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UsageError(f"{what} {spec!r}: {target!r} has no function {func_name!r}")
    return func


def call_user(func: Callable[..., Any], spec: str, what: str, *args: Any) -> Any:
    """Call a user's function, turning its exception into one line that names it."""
    try:
        return func(*args)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{what} {spec!r} raised {type(exc).__name__}: {exc}") from exc
