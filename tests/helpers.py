"""What tests share besides fixtures: the paths, the framework names, and one subprocess runner.

Tests import these with ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``);
fixtures stay in ``conftest.py``, where pytest finds them by itself.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from backendlab.backends import BACKEND_NAMES, BACKENDS
from backendlab.models import HUB_MODELS, MODELS

#: The modules a backend's framework is imported as (jax, tensorflow, torch).
FRAMEWORKS = tuple(b.module for b in BACKENDS.values())
HERE = Path(__file__).parent
ROOT = HERE.parent
FIXTURES = HERE / "fixtures"

#: Job handlers for warm workers that only tests use (``run_code`` runs a snippet on a backend).
POOL_JOBS = FIXTURES / "pool_jobs.py"

#: Whether keras_hub (for the zoo's bert and gpt) is installed; found without importing it.
HAS_KERAS_HUB = importlib.util.find_spec("keras_hub") is not None
#: Every zoo model by name, as pytest params: those built from keras_hub skip where it is not installed.
ZOO = [
    pytest.param(name, marks=pytest.mark.skipif(not HAS_KERAS_HUB, reason="keras_hub is not installed"))
    if name in HUB_MODELS
    else name
    for name in sorted(MODELS)
]

#: The zoo's real architectures: each costs tens of seconds a backend, so they train on every backend in
#: one place, tests/test_zoo_architectures.py (the cross session), and the per-backend tests use the rest.
ARCHITECTURES = ("mobilenet", "resnet", "bert", "gpt")
SMALL_ZOO = [name for name in sorted(MODELS) if name not in ARCHITECTURES]

#: Quiets TensorFlow's start-up chatter, so a failing test's stderr shows the failure.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def run(
    args: Sequence[str], *, env: dict | None = None, timeout: float = 600, cwd: str | os.PathLike | None = None
) -> subprocess.CompletedProcess:
    """Run a command to its end with this environment plus ``env``; stdout and stderr as text."""
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **QUIET_ENV, **(env or {})},
    )


def run_python(code: str, *, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter: the way to see what an import pulls in."""
    return run([sys.executable, "-c", code], env=env, timeout=timeout)


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``backendlab ARGS``, as a user runs it."""
    return run([sys.executable, "-m", "backendlab", *args], env=env, timeout=timeout)


def assert_file_passes_without_framework(test_file: str, guard: str) -> None:
    """Every test of ``test_file`` but ``guard`` (the caller), in a fresh interpreter: all pass, no framework loads."""
    code = (
        "import sys, pytest\n"
        f"rc = pytest.main(['-q', '-p', 'no:cacheprovider', {test_file!r}, '-k', 'not {guard}'])\n"
        f"print('frameworks imported:', [m for m in {('keras', *FRAMEWORKS)!r} if m in sys.modules])\n"
        "sys.exit(rc)\n"
    )
    done = run_python(code, env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "frameworks imported: []" in done.stdout
    assert " failed" not in done.stdout and " passed" in done.stdout


def on_backends(pool, code: str, folder: Path, backends: Sequence[str] = BACKEND_NAMES) -> dict[str, object]:
    """Run ``code`` on each backend's warm worker, one after another; what each left in ``result``."""
    found = {}
    for backend in backends:
        done = pool.run(backend, f"{POOL_JOBS}:run_code", {"code": code}, Path(folder) / backend)
        assert done.ok, f"{backend}: {done.message}\n{done.log_tail}"
        found[backend] = done.result
    return found
