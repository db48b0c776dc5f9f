"""The cross layer: nox runs it once, with every backend installed. Its tests start a worker per
backend from the session's warm pool (``pool``), or the command line in a process of its own.

Tests here whose subject does not depend on the backend (process lifetime, the pool's faults, errors
found before any training) run on ``backend``, the first backend, once.
"""

from __future__ import annotations

import os

import pytest

from backendlab.backends import BACKEND_NAMES


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("KERAS_BACKEND", BACKEND_NAMES[0])


@pytest.fixture(scope="session")
def backend() -> str:
    """The backend for the tests that need one, and not each: the first (JAX, the quickest to start)."""
    return BACKEND_NAMES[0]
