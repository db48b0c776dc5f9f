"""What tests share besides fixtures: the paths, the framework names, and one subprocess runner.

Tests import these with ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``);
fixtures stay in ``conftest.py``, where pytest finds them by itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
#: one place, tests/cross/test_zoo_architectures.py, and the per-backend tests use the rest.
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


def on_backends(pool, code: str, folder: Path, backends: Sequence[str] = BACKEND_NAMES) -> dict[str, object]:
    """Run ``code`` on each backend's warm worker, one after another; what each left in ``result``."""
    found = {}
    for backend in backends:
        done = pool.run(backend, f"{POOL_JOBS}:run_code", {"code": code}, Path(folder) / backend)
        assert done.ok, f"{backend}: {done.message}\n{done.log_tail}"
        found[backend] = done.result
    return found


# --- files the tests write and read ---------------------------------------------------------------


def report_json(folder: Path) -> dict:
    """compare's ``report.json`` in ``folder``."""
    return json.loads((Path(folder) / "report.json").read_text())


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as strict JSON readers (JavaScript, jq, Go) do."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def holds_only(folder: Path, *names: str) -> None:
    """Nothing was written: the folder holds what the test put there, and no more."""
    assert sorted(p.name for p in Path(folder).rglob("*")) == sorted(names)


def write_npz(tmp_path: Path, name: str = "mine.npz", **parts) -> str:
    """A small valid .npz (20 train and 6 test samples, 5 features, binary labels) with ``parts`` replaced."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(20, 5)),
        "y_train": rng.integers(0, 2, 20),
        "x_test": rng.normal(size=(6, 5)),
        "y_test": rng.integers(0, 2, 6),
    }
    arrays.update(parts)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


def floats(*shape: int) -> np.ndarray:
    """Seeded standard-normal float32 inputs of ``shape``."""
    return np.random.default_rng(0).standard_normal(shape).astype("float32")


# --- the fixture files, as specs -------------------------------------------------------------------


def pipeline(name: str) -> str:
    """A data function of ``tests/fixtures/pipelines.py``, as a ``file.py:function`` spec."""
    return f"{FIXTURES / 'pipelines.py'}:{name}"


#: The layer factories of the parity helper's tests.
PARITY_LAYERS = FIXTURES / "parity_layers.py"


def parity_layer(name: str) -> str:
    """A layer factory of ``tests/fixtures/parity_layers.py``, as a ``file.py:function`` spec."""
    return f"{PARITY_LAYERS}:{name}"


def frameworks_after(code: str, backend: str) -> list[str]:
    """The frameworks a fresh interpreter has imported after running ``code`` with ``KERAS_BACKEND=backend``."""
    loaded = f"import sys, json; print(json.dumps(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))"
    proc = run_python(f"{code}\n{loaded}", env={"KERAS_BACKEND": backend})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that a test stops with Ctrl-C: SIGINT handled as in a terminal.

    A shell's background job (``&``, nohup, a CI runner) starts with SIGINT ignored, every child inherits
    that, and Python then installs no KeyboardInterrupt handler: the test's Ctrl-C would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
