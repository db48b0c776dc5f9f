"""Choosing a backend the Keras way, and what importing backendlab costs."""

from __future__ import annotations

import pytest
from helpers import frameworks_after

from backendlab.backends import BACKENDS, ensure_backend
from backendlab.cli import main
from backendlab.errors import UsageError


def test_import_backendlab_loads_no_framework(backend):
    assert frameworks_after("import backendlab", backend) == []


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
