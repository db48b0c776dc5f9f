"""Shared fixtures. Per-backend sessions run on the backend KERAS_BACKEND names;
the `all` session (tests marked `cross`) drives worker processes instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backendlab.backends import BACKENDS, requested_backend_name

FRAMEWORKS = tuple(b.module for b in BACKENDS.values())
HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"


@pytest.fixture(scope="session")
def backend() -> str:
    return requested_backend_name()


@pytest.fixture(scope="session")
def seed_result():
    """The seed example with its defaults: MLP on breast cancer, SGD with Nesterov momentum."""
    from backendlab.training import run_training

    return run_training()


def run_python(code: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backendlab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )
