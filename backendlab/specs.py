"""Load a user's function named as ``path/to/file.py:function`` or ``package.module:function``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from backendlab.errors import UsageError, one_line


def is_callable_spec(spec: str) -> bool:
    return ":" in spec


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """The function that ``spec`` names; ``what`` ("model", "data") words the errors."""
    target, func_name = _parts(spec, what)
    func = getattr(_module(target, what), func_name, None)
    if not callable(func):
        raise UsageError(f"{what} {spec!r}: {target!r} has no function {func_name!r}")
    return func


def user_objects(spec: str, what: str) -> dict[str, Any]:
    """The public functions and classes of the user's code in ``spec``'s module, by name; {} for a zoo name.

    A model compiled with a loss or metric that is a plain function of the user's file, or holding an
    unregistered class, is saved by name only: Keras loads it back only when given these as ``custom_objects``.
    What the module defines counts, and what it imports from another file of the user's; not what it imports
    from an installed library (NumPy's ``mean`` must not stand in for Keras's ``"mean"``).
    """
    if not is_callable_spec(spec):
        return {}
    module = _module(_parts(spec, what)[0], what)
    return {  # by the object's own name, as Keras saved it, whatever name the module binds it to
        obj.__name__: obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and (obj.__module__ == module.__name__ or _users_file(obj))
    }


def _parts(spec: str, what: str) -> tuple[str, str]:
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name:
        raise UsageError(f"{what} {spec!r} must look like path/to/file.py:function or package.module:function")
    return target, func_name


def _module(target: str, what: str) -> ModuleType:
    return _import_file(target, what) if target.endswith(".py") else _import_module(target, what)


def _users_file(obj: Any) -> bool:
    """Whether ``obj`` was defined in a file of the user's: not in the standard library or an installed package."""
    try:
        filename = inspect.getsourcefile(obj)
    except TypeError:  # built in
        return False
    return filename is not None and not filename.startswith(_library_paths())


def _library_paths() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))


def check_spec(spec: str, what: str) -> None:
    """Before any worker starts: a ``file.py:function`` names a file that exists. Imports nothing
    (the file may import a framework); ``module:function`` is checked where it is imported."""
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name:
        raise UsageError(f"{what} {spec!r} must look like path/to/file.py:function or package.module:function")
    if target.endswith(".py") and not Path(target).is_file():
        raise UsageError(f"{what} file {target!r} does not exist")


def _import_file(target: str, what: str) -> ModuleType:
    path = Path(target)
    if not path.is_file():
        raise UsageError(f"{what} file {target!r} does not exist")
    # A name unique per file, so two user files called model.py do not collide.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"_backendlab_user_{digest}"
    if name in sys.modules:  # imported once per process: its registered classes stay the same objects
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    # Importable by name, as a real module is: torch.compile, pickling and Keras's registry
    # look up a class's module by its __module__.
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"{what} file {target!r} failed to import: {_raised_at(exc)}") from exc
    return module


def _import_module(target: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise UsageError(f"{what} module {target!r} cannot be imported: {exc}") from exc
    except Exception as exc:  # a SyntaxError, or anything the module's own code raised
        raise UsageError(f"{what} module {target!r} failed to import: {_raised_at(exc)}") from exc


def _raised_at(exc: Exception) -> str:
    """``SyntaxError at path/file.py:3: message``: the error and the line that raised it, in one line."""
    if isinstance(exc, SyntaxError):  # its traceback ends in importlib; the error knows the line
        filename, lineno, message = exc.filename, exc.lineno, exc.msg
    else:
        frame = _users_frame(exc)
        filename, lineno = (frame.filename, frame.lineno) if frame else (None, None)
        message = str(exc)
    at = f" at {_shown(filename)}:{lineno}" if filename else ""
    lines = str(message or "").strip().splitlines()
    return f"{type(exc).__name__}{at}" + (f": {lines[0]}" if lines else "")


def _users_frame(exc: Exception) -> traceback.FrameSummary | None:
    """The deepest frame of the user's own code (not importlib, the standard library, installed
    packages or this file); the deepest frame of all when none is the user's."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    own = [f for f in frames if not f.filename.startswith(_library_paths()) and f.filename != __file__]
    return (own or frames or [None])[-1]


def _shown(filename: str) -> str:
    """A path relative to the working directory when it lies below it, else as it is."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return filename


def call_user(func: Callable[..., Any], spec: str, what: str, *args: Any) -> Any:
    """Call a user's function, turning its exception into one line that names it."""
    try:
        return func(*args)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{what} {spec!r} raised {one_line(exc)}") from exc
