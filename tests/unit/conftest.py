"""The unit layer: no framework and no worker process. nox runs it once, in a virtualenv where no
framework is installed; each test here is also held to importing none where one is installed."""

from __future__ import annotations

import sys

import pytest
from helpers import FRAMEWORKS

from backendlab.backends import BACKEND_NAMES

WATCHED = ("keras", *FRAMEWORKS)


@pytest.fixture(autouse=True)
def imports_no_framework():
    before = {m for m in WATCHED if m in sys.modules}
    yield
    imported = sorted(m for m in WATCHED if m in sys.modules and m not in before)
    assert not imported, f"a unit test imported {imported}: it belongs in tests/backend"


@pytest.fixture(scope="session")
def backend() -> str:
    """A backend's name, for the tests that pass one on a command line that fails before any worker starts."""
    return BACKEND_NAMES[0]
