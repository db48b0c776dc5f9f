"""The per-backend layer: every test runs on the one backend this session was started for, which Keras
fixes for the whole process at its first import. nox runs this folder once per backend, each in a
virtualenv with only that backend installed.

The ``backend`` fixture is parametrized with it, so test ids name it (``test_x[torch]``) and so do
markers (``-m torch``).
"""

from __future__ import annotations

import os

import pytest

from backendlab.backends import BACKEND_NAMES


def _session_backend(config: pytest.Config) -> str:
    name = config.getoption("--backend") or os.environ.get("KERAS_BACKEND") or BACKEND_NAMES[0]
    if name not in BACKEND_NAMES:
        raise pytest.UsageError(f"--backend {name!r} is not a backend: use one of {', '.join(BACKEND_NAMES)}")
    return name


def pytest_configure(config: pytest.Config) -> None:
    os.environ["KERAS_BACKEND"] = _session_backend(config)  # before any test imports keras


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        name = _session_backend(metafunc.config)
        metafunc.parametrize(
            "backend", [pytest.param(name, marks=getattr(pytest.mark, name))], ids=[name], scope="session"
        )


@pytest.fixture(scope="session")
def seed_result():
    """The seed example with its defaults: MLP on breast cancer, SGD with Nesterov momentum."""
    from backendlab.training import run_training

    return run_training()
