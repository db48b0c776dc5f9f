"""Shared fixtures. Per-backend sessions run on the backend KERAS_BACKEND names;
the `all` session (tests marked `cross`) drives worker processes instead, kept warm for the
whole session in one pool.

Paths, constants and the subprocess runner live in ``helpers.py``."""

from __future__ import annotations

import pytest

from backendlab.backends import requested_backend_name


@pytest.fixture(scope="session")
def backend() -> str:
    return requested_backend_name()


@pytest.fixture(scope="session")
def seed_result():
    """The seed example with its defaults: MLP on breast cancer, SGD with Nesterov momentum."""
    from backendlab.training import run_training

    return run_training()


@pytest.fixture(scope="session")
def pool():
    """Warm workers, one per backend, for the whole session: each framework is imported once."""
    from backendlab.workers.runner import WorkerPool

    with WorkerPool() as workers:
        yield workers
