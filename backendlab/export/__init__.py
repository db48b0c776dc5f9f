"""``backendlab export``: a saved model exported with Keras's ``model.export``, checked in its own runtime.

``formats.py`` holds the formats, what each needs on each backend, the backends that can make each
(``ROUTES``) and the tolerances (compare imports them from here; it imports nothing), ``run.py`` the
export and its check (run in a process whose backend is chosen), ``cli.py`` the command. The
names of ``run.py`` are importable from here too; importing this package imports no framework.
"""

from __future__ import annotations

from backendlab import lazy
from backendlab.export.formats import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    FORMATS,
    ROUTES,
    failed_cell,
    missing_message,
    missing_packages,
)

lazy.callable_package(__name__, "backendlab.api:export")  # backendlab.export(...) runs the command

_RUN = (
    "Expected",
    "ExportFailed",
    "check_export",
    "check_exports",
    "export_model",
    "export_to",
    "load_runtime",
    "verify_export",
)

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "FORMATS",
    "ROUTES",
    "failed_cell",
    "missing_message",
    "missing_packages",
    *_RUN,
]


__getattr__ = lazy.exports(__name__, dict.fromkeys(_RUN, ".run"))
