"""``backendlab export``: a saved model exported with Keras's ``model.export``, checked in its own runtime.

``formats.py`` holds the formats and tolerances (compare imports them from here), ``run.py`` the
export and its check (run in a process whose backend is chosen), ``cli.py`` the command. The
names of ``run.py`` are importable from here too; importing this package imports no framework.
"""

from __future__ import annotations

from backendlab import lazy
from backendlab.export.formats import DEFAULT_ATOL, DEFAULT_RTOL, FORMATS

_RUN = (
    "ExportFailed",
    "check_export",
    "check_exports",
    "export_model",
    "export_to",
    "failed_cell",
    "load_runtime",
    "missing_packages",
    "verify_export",
)

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "FORMATS", *_RUN]


__getattr__ = lazy.exports(__name__, dict.fromkeys(_RUN, ".run"))
