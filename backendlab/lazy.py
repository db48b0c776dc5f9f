"""Names a package exports but imports only when first asked for, so that importing the package costs
no more than itself: no framework, no Keras, none of its heavier modules until one is used."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


def exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each of ``names`` from its module (``".sub"``, relative to
    ``package``, or an absolute name); a name that is a module's own last part is that module."""

    def __getattr__(name: str) -> Any:
        try:
            found = importlib.import_module(names[name], package)
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return found if found.__name__.endswith(f".{name}") else getattr(found, name)

    return __getattr__


class CommandPackage(types.ModuleType):
    """A feature's package that is also its command's function: ``backendlab.compare(model=...)``.

    ``import backendlab.compare.run`` sets the attribute ``compare`` of ``backendlab`` to the package
    ``backendlab.compare``, whatever it held before; a function of that name would be lost. The package
    itself being callable keeps ``backendlab.compare(...)`` and ``from backendlab import compare`` the
    function, whichever of its modules are imported, and in which order.
    """

    _function: str  # "module:function", imported at the first call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, function = self._function.split(":")
        return getattr(importlib.import_module(module), function)(*args, **kwargs)


def callable_package(package: str, function: str) -> None:
    """Make the package ``package`` (already in ``sys.modules``: call this from its ``__init__``) call ``function``,
    ``"module:function"``, imported at the first call."""
    module = sys.modules[package]
    module.__class__ = CommandPackage
    module._function = function
