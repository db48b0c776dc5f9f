"""Load a user's function named as ``path/to/file.py:function`` or ``package.module:function``, or check one
without importing it (before any worker starts)."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import pickle
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from backendlab.errors import UsageError, one_line

#: A callable sent by value (backendlab.callables): ``path/to/<stem>.pkl:name`` names it in a cloudpickle file.
SENT_SUFFIX = ".pkl"


def is_callable_spec(spec: str) -> bool:
    return ":" in spec


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """The function that ``spec`` names; ``what`` ("model", "data") words the errors."""
    target, func_name = _parts(spec, what)
    func = _namespace(target, what).get(func_name)
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
    target = _parts(spec, what)[0]
    if target.endswith(SENT_SUFFIX):  # what was sent along with the callable, under the names Keras saves
        return {key: obj for key, obj in _sent(target, what).items() if inspect.isfunction(obj) or inspect.isclass(obj)}
    module = _module(target, what)
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


def _namespace(target: str, what: str) -> dict[str, Any]:
    """The names ``target`` defines: a module's, or those of a file of callables sent by value."""
    return _sent(target, what) if target.endswith(SENT_SUFFIX) else vars(_module(target, what))


#: Files of callables sent by value, read once per process (their classes stay the same objects).
_SENT: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}


def _sent(target: str, what: str) -> dict[str, Any]:
    """The names in a file that :func:`backendlab.callables.send` wrote; unpickling imports what they use."""
    try:
        stat = os.stat(target)
    except OSError:
        raise UsageError(f"{what} file {target!r} does not exist") from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    if target in _SENT and _SENT[target][0] == stamp:
        return _SENT[target][1]
    try:
        with open(target, "rb") as f:
            names = pickle.load(f)
    except Exception as exc:
        raise UsageError(f"{what} file {target!r} failed to load: {_raised_at(exc)}") from exc
    if not isinstance(names, dict):
        raise UsageError(f"{what} file {target!r} does not hold callables sent by backendlab")
    _SENT[target] = (stamp, names)
    return names


def _users_file(obj: Any) -> bool:
    """Whether ``obj`` was defined in a file of the user's: not in the standard library or an installed package."""
    try:
        filename = inspect.getsourcefile(obj)
    except TypeError:  # built in
        return False
    return filename is not None and not library_file(filename)


def library_file(filename: str) -> bool:
    """Whether ``filename`` belongs to the standard library or an installed package."""
    return filename.startswith(_library_paths())


def _library_paths() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))


def check_spec(spec: str, what: str) -> None:
    """Before any worker starts, what can be known of ``spec`` without importing it (a user's file may
    import a framework): its shape, that its file or its module's package can be found, that the file
    parses, and that it may define the function (:func:`may_define`). Each error is the one the import
    would raise later."""
    target, _, func_name = spec.rpartition(":")
    if not target or not func_name:
        raise UsageError(f"{what} {spec!r} must look like path/to/file.py:function or package.module:function")
    if target.endswith(SENT_SUFFIX):  # written by backendlab.callables: unpickling it would import what it uses
        if not Path(target).is_file():
            raise UsageError(f"{what} file {target!r} does not exist")
        return
    if target.endswith(".py"):
        if not Path(target).is_file():
            raise UsageError(f"{what} file {target!r} does not exist")
        source, kind = Path(target), "file"
    else:
        source, kind = _module_source(target, what), "module"
    if source is None:
        return
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except SyntaxError as exc:
        raise UsageError(f"{what} {kind} {target!r} failed to import: {_raised_at(exc)}") from None
    except (OSError, ValueError, RecursionError):  # unreadable, null bytes, too deep: the import will say
        return
    if not may_define(tree, func_name):
        raise UsageError(f"{what} {spec!r}: {target!r} has no function {func_name!r}")


def _module_source(target: str, what: str) -> Path | None:
    """The ``.py`` file of module ``target``, found as the import would find it but without running
    any package's ``__init__``; None where that cannot be told without importing. A top-level
    package that cannot be found is the import's own error."""
    parts = target.split(".")
    if parts[0] in sys.modules:
        return None
    found = None
    for depth in range(len(parts)):
        name = ".".join(parts[: depth + 1])
        try:
            if found is None:
                found = importlib.util.find_spec(name)
            else:  # a package's __init__ could change its __path__; then only the import can tell
                locations = found.submodule_search_locations
                found = importlib.machinery.PathFinder.find_spec(name, locations) if locations else None
        except (ImportError, ValueError):
            return None
        if found is None:
            if depth == 0:
                raise UsageError(f"{what} module {target!r} cannot be imported: No module named {name!r}")
            return None
    origin = Path(found.origin) if found.origin and found.has_location else None
    return origin if origin is not None and origin.suffix == ".py" and origin.is_file() else None


#: Names through which a module can make names that no statement of it spells.
_DYNAMIC_NAMES = frozenset({"globals", "vars", "exec", "eval", "setattr", "__import__"})
_DYNAMIC_ATTRIBUTES = frozenset({"modules", "__dict__"})  # sys.modules[__name__], module.__dict__


def may_define(tree: ast.Module, name: str) -> bool:
    """Whether the module parsed as ``tree`` may have the attribute ``name`` once imported.

    False only when nothing could make it: no statement at module level binds ``name`` (a def, a
    class, an assignment of any kind, an import, a for/with/except target; inside module-level
    ``if``/``try``/``for``/``with`` blocks too, for conditional definitions), no function declares it
    ``global``, no ``something.name = ...`` anywhere (the module may import itself), and the module
    has no way to make names at run time: no ``from x import *``, no module-level ``__getattr__``, no
    use of ``globals``, ``vars``, ``exec``, ``eval``, ``setattr``, ``__import__``, ``sys.modules`` or
    ``__dict__``. Whether the value is a function is left to the import.
    """
    bound = _top_level_names(tree)
    if name in bound or "__getattr__" in bound:
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            return True
        if isinstance(node, ast.Global) and name in node.names:
            return True
        if isinstance(node, ast.Attribute) and node.attr == name and isinstance(node.ctx, ast.Store):
            return True  # some_module.name = ..., the module itself among them
        if isinstance(node, ast.Name) and node.id in _DYNAMIC_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr in _DYNAMIC_ATTRIBUTES:
            return True
    return False


def _top_level_names(tree: ast.Module) -> set[str]:
    """Every name a statement at module level binds; the bodies of functions, classes and lambdas bind their own."""
    names: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        pending.extend(ast.iter_child_nodes(node))
    return names


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
