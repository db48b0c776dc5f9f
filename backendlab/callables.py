"""Users' models, data and layer factories given as Python objects, sent to the backends' workers.

Each backend trains in a process of its own (Keras fixes its backend once per process), so what a
user passes reaches the workers through a file, and :func:`send` turns it into the string a worker
reads (the same strings the command line takes):

- a function defined at module level in a ``.py`` file (not ``__main__``) goes **by reference**,
  ``path/to/file.py:name``: the worker imports it from its file, as it does a command line's;
- anything else callable (a lambda, a closure over plain values, a function or class defined in a
  notebook cell or in ``__main__``, an object with ``__call__``) goes **by value**: cloudpickle
  writes it to ``<folder>/<stem>.pkl`` beside the user's functions and classes it uses (Keras needs
  those as ``custom_objects`` to load a ``.keras`` file that names them), and the string is
  ``<that file>:<its name>``. Where it uses a module of the user's own (a ``.py`` file beside the
  notebook, a test file), that module travels by value too: a worker may not find it on its path;
- a ``keras.Model`` instance is saved by the user's process (which has Keras imported already) as a
  ``.keras`` file, its config and weights, and each backend loads it (:class:`SavedModel`); its
  weights are the start (``portable_init`` keeps what a rebuild gives again).

What cannot travel (a live framework tensor, an open file, a lock, a generator, anything
cloudpickle refuses) is refused here, before any worker starts, in one line that names what the
callable captured and what to do. Nothing here imports a framework: a pickle names the modules a
callable uses and the worker imports them.
"""

from __future__ import annotations

import dataclasses
import dis
import inspect
import io
import sys
import threading
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle

from backendlab.backends import BACKENDS
from backendlab.errors import UsageError, one_line
from backendlab.runspec import RunSpec
from backendlab.specs import SENT_SUFFIX, library_file

#: The modules whose objects live in a framework (a tensor, a variable, a layer): no other process can take them.
FRAMEWORK_MODULES = frozenset({*(b.module for b in BACKENDS.values()), "jaxlib", "keras", "keras_hub"})
#: Keras's classes of live objects, by their defining module and name (Keras is never imported to ask).
KERAS_LIVE = frozenset(
    {
        "keras.src.backend.common.variables.Variable",
        "keras.src.backend.common.keras_tensor.KerasTensor",
        "keras.src.layers.layer.Layer",
    }
)
#: The folder of a compare run's ``--out`` that holds what was sent by value.
SENT_FOLDER = "sent"

_LOCKS = (type(threading.Lock()), type(threading.RLock()))


@dataclasses.dataclass(frozen=True)
class SavedModel:
    """A ``keras.Model`` the user passed, as a ``.keras`` file: calling it loads the model on this backend."""

    path: str
    custom_objects: dict[str, Any]

    def __call__(self):
        from backendlab.training.files import load_model

        return load_model(self.path, self.custom_objects)


def send(factory: Any, what: str, folder: str | Path, stem: str) -> str:
    """The string a worker reads ``factory`` from: a string as it is; see the module's docstring.

    ``what`` ("model factory", "data function", "layer factory") words the errors; a by-value
    factory is written to ``folder/<stem>.pkl`` (and a model instance to ``folder/<stem>.keras``).
    """
    if isinstance(factory, str):
        return factory
    keras = sys.modules.get("keras")  # a keras.Model instance means the user's process has Keras already
    if keras is not None and isinstance(factory, keras.Model):
        return _send_model(factory, what, Path(folder), stem)
    if not callable(factory):
        raise UsageError(
            f"{what} must be a function, a class, a keras.Model or a string like path/to/file.py:function, "
            f"got {type(factory).__name__}"
        )
    return by_reference(factory) or _send_by_value(factory, what, Path(folder), stem)


def send_run(run: RunSpec, folder: str | Path) -> RunSpec:
    """``run`` with its model and data as strings the workers read (:func:`send`); unchanged when they are."""
    return run.replace(
        model=send(run.model, "model factory", folder, "model"),
        data=None if run.data is None else send(run.data, "data function", folder, "data"),
    )


def send_each(factories: Iterable[Any], folder: str | Path) -> dict[int, str]:
    """Several model factories (bench's, tune's), each object once: ``id(factory)`` -> its string,
    the by-value ones as ``model-<i>.pkl``."""
    sent: dict[int, str] = {}
    for factory in factories:
        if id(factory) not in sent:
            sent[id(factory)] = send(factory, "model factory", folder, f"model-{len(sent)}")
    return sent


def by_reference(factory: Any) -> str | None:
    """``path/to/file.py:name`` for a function a worker can import from its file by name; None otherwise.

    Not ``__main__``'s: importing a script runs it again, and a notebook has no file.
    """
    if not inspect.isfunction(factory) or factory.__qualname__ != factory.__name__:
        return None  # a lambda's name is <lambda>, a nested function's qualname has <locals>
    module = sys.modules.get(factory.__module__)
    if factory.__module__ == "__main__" or module is None or getattr(module, factory.__name__, None) is not factory:
        return None
    try:
        path = inspect.getsourcefile(factory)
    except TypeError:
        return None
    if path is None or not path.endswith(".py") or not Path(path).is_file():
        return None
    if library_file(path):  # an installed package's: imported by its name, as the package's own imports expect
        return f"{factory.__module__}:{factory.__name__}"
    return f"{Path(path).resolve()}:{factory.__name__}"


def name_of(factory: Any) -> str:
    """A function's or class's name; ``Name()`` for an object with ``__call__`` (not its class, sent beside it)."""
    name = getattr(factory, "__name__", None)
    return name if isinstance(name, str) else f"{type(factory).__name__}()"


# --- by value ------------------------------------------------------------------------------------


def _send_by_value(factory: Any, what: str, folder: Path, stem: str) -> str:
    name = name_of(factory)
    check_sendable(factory, what)
    objects = {_saved_name(obj): obj for obj in _users_objects(factory)}
    return _write(folder / f"{stem}{SENT_SUFFIX}", name, {**objects, name: factory}, what)


def _write(path: Path, name: str, namespace: dict[str, Any], what: str) -> str:
    """Pickle ``namespace`` (the factory under ``name``, the user's objects under theirs) to ``path``."""
    factory = namespace[name]
    modules = [m for m in _users_modules(factory) if m.__name__ not in cloudpickle.list_registry_pickle_by_value()]
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        data = cloudpickle.dumps(namespace)
    except Exception as exc:
        raise UsageError(_cannot_send(what, name, factory, exc)) from None
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {str(path)!r} to send {what} {name!r}: {exc.strerror}") from None
    return f"{path.resolve()}:{name}"


def check_sendable(factory: Any, what: str) -> None:
    """Raise one UsageError line for the first value ``factory`` captures that no other process can receive."""
    for captured, value in _captured(factory):
        why = unsendable(value)
        if why is not None:
            kind, advice = why
            raise UsageError(
                f"{what} {name_of(factory)!r} captures {captured!r} ({kind}), "
                f"which cannot be sent to the other backends' workers: {advice}"
            )


def unsendable(value: Any) -> tuple[str, str] | None:
    """``(what it is, what to do)`` for a value that cannot be sent to another process; None if it can be."""
    kind = type(value)
    top = (kind.__module__ or "").split(".")[0]
    live_keras = {f"{c.__module__}.{c.__qualname__}" for c in kind.__mro__} & KERAS_LIVE if top == "keras" else set()
    if live_keras == {"keras.src.layers.layer.Layer"}:  # a layer or a model, built in this process
        return f"a keras.{kind.__qualname__}", "create it inside the function, or pass the model itself"
    if (top in FRAMEWORK_MODULES and top != "keras") or live_keras:
        shown = "jax" if top == "jaxlib" else top  # a jax.Array is a jaxlib ArrayImpl
        return f"a {shown}.{kind.__qualname__}", "create it inside the function, or capture a numpy array"
    if isinstance(value, io.IOBase):
        return "an open file" if not value.closed else "a file", "open it inside the function"
    if isinstance(value, _LOCKS):
        return "a lock", "create it inside the function"
    if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
        return "a generator", "capture a list of its items, or a function that makes the generator"
    return None


def _cannot_send(what: str, name: str, factory: Any, exc: Exception) -> str:
    """cloudpickle's refusal, naming the first captured value it refuses alone where there is one."""
    for captured, value in _captured(factory):
        if inspect.isfunction(value) or inspect.isclass(value) or isinstance(value, types.ModuleType):
            continue  # sent by reference, or walked into by _captured
        try:
            cloudpickle.dumps(value)
        except Exception as alone:
            return (
                f"{what} {name!r} captures {captured!r} (a {_type_name(value)}), which cannot be sent "
                f"to the other backends' workers ({one_line(alone)}): create it inside the function"
            )
    return (
        f"{what} {name!r} cannot be sent to the other backends' workers ({one_line(exc)}): "
        "capture only plain values (numbers, strings, numpy arrays), or define it at module level in a .py file"
    )


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _captured(factory: Any) -> Iterator[tuple[str, Any]]:
    """``(name, value)`` of everything ``factory`` takes along by value: closure cells, the globals its code
    reads, defaults; a class's attributes and its methods'; a callable object's attributes; and, through
    the functions and classes among them that travel by value too, theirs; one level into containers."""
    seen: set[int] = set()
    pending = [factory]
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for name, value in _own_captures(obj):
            yield name, value
            for item in _items(value):
                yield name, item
            if (inspect.isfunction(value) or inspect.isclass(value)) and _travels_by_value(value):
                pending.append(value)


def _own_captures(obj: Any) -> Iterator[tuple[str, Any]]:
    if inspect.isfunction(obj):
        code = obj.__code__
        for name, cell in zip(code.co_freevars, obj.__closure__ or ()):
            try:
                yield name, cell.cell_contents
            except ValueError:  # an empty cell: a name the enclosing function had not bound yet
                continue
        for name in _global_names(code):
            if name in obj.__globals__:
                yield name, obj.__globals__[name]
        params = code.co_varnames[: code.co_argcount]
        yield from zip(params[len(params) - len(obj.__defaults__ or ()) :], obj.__defaults__ or ())
        yield from (obj.__kwdefaults__ or {}).items()
    elif inspect.isclass(obj):
        yield from ((base.__name__, base) for base in obj.__bases__)
        for name, attr in vars(obj).items():
            for func in _functions_of(attr):
                yield from _own_captures(func)
            if not (name.startswith("__") and name.endswith("__")) and not _functions_of(attr):
                yield f"{obj.__name__}.{name}", attr
    elif callable(obj):  # an object with __call__: its attributes, and its class where that travels by value
        yield from getattr(obj, "__dict__", {}).items()
        yield type(obj).__name__, type(obj)


def _functions_of(attr: Any) -> list[types.FunctionType]:
    """The functions a class attribute holds: a method, a static or class method, a property's accessors."""
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    if isinstance(attr, property):
        return [f for f in (attr.fget, attr.fset, attr.fdel) if inspect.isfunction(f)]
    return [attr] if inspect.isfunction(attr) else []


def _global_names(code: types.CodeType) -> Iterator[str]:
    """The global names ``code`` and the functions defined in it read or write."""
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME"):
            yield instruction.argval
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _items(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return []


def _travels_by_value(obj: Any) -> bool:
    """Whether cloudpickle sends this function or class by value: defined in ``__main__``, in another
    function, or in a module of the user's (which :func:`_write` registers to go by value)."""
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    if module is None or module.__name__ == "__main__" or _users_module(module):
        return True
    found = module
    for part in obj.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is not obj


def _users_module(module: types.ModuleType) -> bool:
    """A module of the user's own files: not the standard library, an installed package or backendlab."""
    if module.__name__ == "__main__" or module.__name__.split(".")[0] == "backendlab":
        return False
    path = getattr(module, "__file__", None)
    return path is not None and not library_file(path)


def _users_modules(factory: Any) -> list[types.ModuleType]:
    """The user's modules whose functions and classes ``factory`` uses: sent by value with it."""
    found = {}
    for _, value in [("", factory), *_captured(factory)]:
        if inspect.isfunction(value) or inspect.isclass(value):
            module = sys.modules.get(value.__module__)
            if module is not None and _users_module(module):
                found[module.__name__] = module
    return list(found.values())


def _users_objects(factory: Any) -> list[Any]:
    """The functions and classes of the user's that ``factory`` uses, for Keras's ``custom_objects``."""
    objects = {}
    for _, value in _captured(factory):
        if (inspect.isfunction(value) or inspect.isclass(value)) and _travels_by_value(value):
            objects[id(value)] = value
    if inspect.isclass(factory):
        objects[id(factory)] = factory
    return list(objects.values())


def _saved_name(obj: Any) -> str:
    """The name Keras saves ``obj`` under: its registered name (``package>Name``) where it was registered."""
    keras = sys.modules.get("keras")
    if keras is not None:
        return keras.saving.get_registered_name(obj)
    return obj.__name__


# --- a model instance ----------------------------------------------------------------------------


def _send_model(model: Any, what: str, folder: Path, stem: str) -> str:
    """Save ``model`` as ``folder/<stem>.keras`` (config and weights) and send a :class:`SavedModel` of it."""
    path = folder / f"{stem}.keras"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        model.save(path)
    except Exception as exc:
        raise UsageError(
            f"{what}: model {model.name!r} cannot be saved as a .keras file, which the other backends load: "
            f"{one_line(exc)}"
        ) from None
    objects = {_saved_name(obj): obj for obj in _model_objects(model)}
    loader = SavedModel(str(path.resolve()), objects)
    return _write(folder / f"{stem}{SENT_SUFFIX}", model.name, {**objects, model.name: loader}, what)


def _model_objects(model: Any) -> list[Any]:
    """The user's classes among the model's layers, and the user's functions it was compiled with."""
    found: dict[int, Any] = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        kind = type(layer)
        if _defined_by_user(kind):
            found[id(kind)] = kind
    for loss in _leaves(getattr(model, "loss", None)):
        if inspect.isfunction(loss) and _defined_by_user(loss):
            found[id(loss)] = loss
    return list(found.values())


def _defined_by_user(obj: Any) -> bool:
    module = sys.modules.get(obj.__module__)
    return module is None or module.__name__ == "__main__" or _users_module(module)


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    if isinstance(tree, (list, tuple)):
        return [leaf for value in tree for leaf in _leaves(value)]
    return [] if tree is None else [tree]
