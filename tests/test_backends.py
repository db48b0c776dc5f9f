"""Choosing a backend the Keras way, and what importing backendlab costs."""

from __future__ import annotations

import json

import pytest
from helpers import FRAMEWORKS, run_python

from backendlab.backends import BACKEND_NAMES, BACKENDS, ensure_backend
from backendlab.cli import main
from backendlab.errors import UsageError

LOADED = f"import sys, json; print(json.dumps(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))"


def _frameworks_after(code: str, backend: str) -> list[str]:
    proc = run_python(f"{code}\n{LOADED}", env={"KERAS_BACKEND": backend})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_backendlab_loads_no_framework(backend):
    assert _frameworks_after("import backendlab", backend) == []


def test_backendlab_loads_no_more_than_keras_does(backend):
    by_keras = _frameworks_after("import keras", backend)
    by_backendlab = _frameworks_after(
        "import backendlab\nbackendlab.backend_info()\nbackendlab.load_dataset('breast_cancer')", backend
    )
    assert backend in by_keras
    assert set(by_backendlab) <= set(by_keras), f"backendlab imported {set(by_backendlab) - set(by_keras)} beyond keras"


def test_backend_info_names_backend_versions_and_devices(backend):
    import importlib.metadata

    import backendlab

    info = backendlab.backend_info()
    assert info.backend == backend
    assert info.framework == BACKENDS[backend].framework
    assert info.framework_version == BACKENDS[backend].framework_version
    assert info.keras_version == importlib.metadata.version("keras")
    assert info.devices and info.devices[0].startswith(("cpu", "/device:CPU"))


def test_unknown_backend_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    with pytest.raises(UsageError) as err:
        ensure_backend()
    assert str(err.value) == (
        "KERAS_BACKEND='theano' is not a backend backendlab supports: "
        "set KERAS_BACKEND to one of jax, tensorflow, torch"
    )


def test_unknown_backend_on_the_command_line_exits_2_without_traceback(monkeypatch, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "backendlab: error: KERAS_BACKEND='theano' is not a backend backendlab supports: "
        "set KERAS_BACKEND to one of jax, tensorflow, torch"
    )
    assert "Traceback" not in err


def test_missing_framework_names_the_extra_to_install(monkeypatch, capsys):
    missing = [b for b in BACKENDS.values() if not b.installed]
    if not missing:
        pytest.skip("every framework is installed here; the per-backend nox sessions run this test")
    b = missing[0]
    monkeypatch.setenv("KERAS_BACKEND", b.name)
    assert main(["info"]) == 0  # info lists it as not installed...
    assert (
        f"{b.name}: not installed: pip install -c constraints.txt -e '.[{b.extra}]'"
        in capsys.readouterr().out.splitlines()
    )
    assert main(["train"]) == 2  # ...and train refuses it
    assert capsys.readouterr().err.strip() == (
        f"backendlab: error: KERAS_BACKEND={b.name!r} needs {b.framework}, which is not installed: "
        f"pip install -c constraints.txt -e '.[{b.extra}]'"
    )


def test_info_lists_every_backend_and_marks_the_active_one(backend, capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in BACKEND_NAMES:
        assert name in out
    active_rows = [line for line in out.splitlines() if "│ * │" in line]
    assert len(active_rows) == 1 and f" {backend} " in active_rows[0]
