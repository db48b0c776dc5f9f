"""Data-parallel training on each backend's own engine matches one-device training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run_cli

from backendlab.errors import UsageError
from backendlab.training import prepare

TOLERANCE = 1e-3  # compare's default


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_two_devices_match_one_device_with_the_same_global_batch(model, backend, tmp_path):
    import keras

    runs = {"one": ("--drop-remainder",), "two": ("--devices", "2")}
    for name, extra in runs.items():
        proc = run_cli(
            "train",
            "--model",
            model,
            "--epochs",
            "2",
            "--batch-size",
            "32",
            *extra,
            "--save",
            str(tmp_path / f"{name}.keras"),
            "--json",
            str(tmp_path / f"{name}.json"),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in runs)
    assert two["config"]["devices"] == 2 and two["config"]["drop_remainder"]
    assert len(two["step_losses"]) == len(one["step_losses"])
    np.testing.assert_allclose(two["history"]["loss"], one["history"]["loss"], rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(two["step_losses"], one["step_losses"], rtol=TOLERANCE, atol=TOLERANCE)
    w1 = keras.saving.load_model(tmp_path / "one.keras").get_weights()
    w2 = keras.saving.load_model(tmp_path / "two.keras").get_weights()
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(b, a, rtol=TOLERANCE, atol=TOLERANCE)


def test_global_batch_must_split_evenly():
    with pytest.raises(UsageError) as err:
        prepare(devices=2, batch_size=31)
    assert (
        str(err.value)
        == "batch size 31 does not split evenly across 2 devices: use a global batch size that is a multiple of 2"
    )


def test_more_devices_than_the_machine_has(capsys):
    import os

    from backendlab.cli import main

    many = (os.cpu_count() or 1) + 1
    assert main(["train", "--devices", str(many), "--batch-size", str(8 * many)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"backendlab: error: asked for {many} devices but this machine has no GPU and {os.cpu_count()} CPU cores "
        f"(at most one virtual device per core): use --devices {os.cpu_count()} or fewer"
    )


@pytest.mark.cross
def test_compare_with_two_devices_agrees_across_backends(tmp_path):
    proc = run_cli("compare", "--devices", "2", "--epochs", "2", "--no-portability", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "agree" and report["settings"]["devices"] == 2
    for name, b in report["backends"].items():
        assert b["status"] == "ok" and b["verdict"] == "agree", name
        assert len(b["step_losses"]) == 2 * (455 // 32)  # the partial batch dropped
