"""What an export needs and lacks, in one line that says how to get it (no framework is imported to find out)."""

from __future__ import annotations

import importlib.util

import pytest

from backendlab.export import formats


@pytest.fixture
def installed(monkeypatch):
    """Pretend only the named import names are installed."""

    def only(*names: str) -> None:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name in names else None)

    return only


def test_a_missing_converter_names_the_extra_with_the_constraints(installed):
    installed("onnx", "jax")
    assert formats.missing_packages("onnx", "jax") == ["onnxruntime", "jax2onnx"]
    assert formats.missing_message("onnx", "jax") == (
        "onnx export on jax needs onnxruntime and jax2onnx installed: pip install -c constraints.txt -e '.[export-jax]'"
    )
    assert formats.missing_message("tf_saved_model", "jax") == (
        "tf_saved_model export on jax needs tensorflow-cpu installed: pip install -c constraints.txt -e '.[tensorflow]'"
    )


def test_a_package_no_extra_installs_is_not_offered_as_a_pip_install(installed):
    installed("tensorflow", "torch")
    assert formats.missing_message("tf_saved_model", "torch") == (
        "tf_saved_model export on torch needs torch_xla, which backendlab's extras do not install: "
        "export the saved .keras file on tensorflow or jax instead (compare does so itself)"
    )
    installed("tensorflow", "torch", "torch_xla")
    assert formats.missing_message("tf_saved_model", "torch") is None


def test_every_format_has_a_route_through_every_backend_that_can_export():
    from backendlab.backends import BACKEND_NAMES

    assert set(formats.ROUTES) == set(formats.FORMATS)
    for fmt, routes in formats.ROUTES.items():
        assert sorted(routes) == sorted(BACKEND_NAMES), fmt
