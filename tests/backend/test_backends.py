"""Choosing a backend the Keras way, and what importing backendlab costs."""

from __future__ import annotations

from helpers import frameworks_after

from backendlab.backends import BACKEND_NAMES, BACKENDS
from backendlab.cli import main


def test_backendlab_loads_no_more_than_keras_does(backend):
    by_keras = frameworks_after("import keras", backend)
    by_backendlab = frameworks_after(
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


def test_info_lists_every_backend_and_marks_the_active_one(backend, capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in BACKEND_NAMES:
        assert name in out
    active_rows = [line for line in out.splitlines() if "│ * │" in line]
    assert len(active_rows) == 1 and f" {backend} " in active_rows[0]
