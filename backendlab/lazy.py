"""Names a package exports but imports only when first asked for, so that importing the package costs
no more than itself: no framework, no Keras, none of its heavier modules until one is used."""

from __future__ import annotations

import importlib
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
