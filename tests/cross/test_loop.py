"""The seed's custom training loop, written once, run with each backend's own autodiff."""

from __future__ import annotations

import json

import numpy as np
from helpers import run_cli

RTOL = 1e-5


def _assert_weights_close(a, b, tol=RTOL):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def test_resume_on_another_backend_matches_uninterrupted_training(tmp_path):
    """Train 2 epochs on JAX, continue 2 on PyTorch; compare to 4 on JAX."""
    import keras

    common = ("train", "--loop", "custom")
    runs = {"whole": ("jax", "--epochs", "4"), "half": ("jax", "--epochs", "2")}
    for name, (backend, *args) in runs.items():
        proc = run_cli(
            *common,
            *args,
            "--save",
            str(tmp_path / f"{name}.keras"),
            "--json",
            str(tmp_path / f"{name}.json"),
            env={"KERAS_BACKEND": backend},
        )
        assert proc.returncode == 0, proc.stderr
    whole = json.loads((tmp_path / "whole.json").read_text())
    reference = keras.saving.load_model(tmp_path / "whole.keras").get_weights()
    for backend in ("torch",):
        out = tmp_path / f"rest-{backend}"
        proc = run_cli(
            *common,
            "--resume",
            str(tmp_path / "half.keras"),
            "--epochs",
            "2",
            "--save",
            f"{out}.keras",
            "--json",
            f"{out}.json",
            env={"KERAS_BACKEND": backend},
        )
        assert proc.returncode == 0, proc.stderr
        rest = json.loads(out.with_suffix(".json").read_text())
        assert rest["backend"] == backend and rest["config"]["initial_epoch"] == 2
        np.testing.assert_allclose(rest["history"]["loss"], whole["history"]["loss"][2:], rtol=RTOL)
        _assert_weights_close(keras.saving.load_model(f"{out}.keras").get_weights(), reference)
