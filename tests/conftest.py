"""What every layer of the tests shares. The layers, each a folder and a nox session:

- ``unit/``: no framework, no worker; runs once, in a virtualenv with no framework installed.
- ``backend/``: runs once per backend, on the backend ``--backend`` names (by default ``KERAS_BACKEND``).
- ``cross/``: runs once with every backend installed: the tests that compare backends, and those whose
  subject does not depend on the backend (process lifetime, the pool's faults, command-line errors).

Paths, constants and the subprocess runner live in ``helpers.py``; what a backend does differently, as
data, in ``known_differences.py``.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=None,
        help="the backend tests/backend runs on (jax, tensorflow or torch; default: KERAS_BACKEND)",
    )


@pytest.fixture(scope="session")
def pool(backendlab_pool):
    """Warm workers, kept for the whole session: each framework is imported once, not once per test.

    The same pool as backendlab's pytest plugin gives users (``backendlab_pool``), so the
    ``backends_agree`` fixture runs on it too."""
    return backendlab_pool


@pytest.fixture
def a_file(tmp_path):
    """A regular file: nothing can be written under it, even by root (the tests run as root here)."""
    path = tmp_path / "notes.txt"
    path.write_text("not a folder\n")
    return path
