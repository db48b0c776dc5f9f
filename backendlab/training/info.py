"""What this process trains on: backend, framework and Keras versions, devices."""

from __future__ import annotations

import platform

from backendlab.backends import ensure_backend, impl
from backendlab.results import BackendInfo


def backend_info() -> BackendInfo:
    """Backend name, framework version, Keras version and devices of this process."""
    backend = ensure_backend()
    import keras

    return BackendInfo(
        backend=backend.name,
        framework=backend.framework,
        framework_version=backend.framework_version,
        keras_version=keras.__version__,
        devices=impl(backend).devices(),
        python_version=platform.python_version(),
    )
