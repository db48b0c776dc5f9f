"""Data-parallel training on each backend's own engine matches one-device training."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_cli

from backendlab.errors import UsageError
from backendlab.results import read_json, write_json
from backendlab.runspec import RunSpec
from backendlab.training import check_padding, run_training

TOLERANCE = 1e-3  # compare's default

EXACT = 1e-5  # two devices against one on the same batches: only the order of float additions differs


def train_one_and_two_devices(tmp_path, **options) -> tuple[dict, dict, list, list]:
    """The run ``options`` (RunSpec fields) on one device, here, and on two, as ``backendlab train --devices 2``:
    both results and final weights."""
    import keras

    one = run_training(save=tmp_path / "one.keras", **options)
    flags = [f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    out = ("--save", str(tmp_path / "two.keras"), "--json", str(tmp_path / "two.json"))
    proc = run_cli("train", *flags, "--devices", "2", *out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    weights = [keras.saving.load_model(tmp_path / f"{n}.keras").get_weights() for n in ("one", "two")]
    write_json(tmp_path / "one.json", one.to_dict())  # as `backendlab train --json` writes it
    return read_json(tmp_path / "one.json"), read_json(tmp_path / "two.json"), *weights


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_two_devices_match_one_device_with_the_same_global_batch(model, backend, tmp_path):
    one, two, w1, w2 = train_one_and_two_devices(tmp_path, model=model, epochs=2, batch_size=32, drop_remainder=True)
    assert two["config"]["devices"] == 2 and two["config"]["drop_remainder"]
    assert len(two["step_losses"]) == len(one["step_losses"])
    np.testing.assert_allclose(two["history"]["loss"], one["history"]["loss"], rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(two["step_losses"], one["step_losses"], rtol=TOLERANCE, atol=TOLERANCE)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(b, a, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize(
    "model, data, batch, steps",
    [
        ("mlp", "breast_cancer", 64, 8),  # 455 samples: a last batch of 7, padded to 8 where fit splits it
        ("functional", "pairs", 48, 11),  # 512 samples: a last batch of 32; two inputs, two outputs
    ],
)
def test_two_devices_train_like_one_device_by_default(model, data, batch, steps, backend, tmp_path):
    one, two, w1, w2 = train_one_and_two_devices(tmp_path, model=model, data=data, epochs=2, batch_size=batch)
    assert not two["config"]["drop_remainder"]
    assert len(two["step_losses"]) == len(one["step_losses"]) == 2 * steps  # the last, partial batch kept
    # torch's custom loop (its data-parallel path) logs no per-output losses; all else it logs is compared.
    logged = {key for key in one["history"] if key == "loss" or not key.endswith("_loss")}
    assert logged <= set(two["history"]) <= set(one["history"])
    for key, values in two["history"].items():
        np.testing.assert_allclose(values, one["history"][key], rtol=EXACT, atol=0, err_msg=key)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(b, a, rtol=EXACT, atol=EXACT)


def test_padding_is_refused_for_batch_normalization():
    import keras

    model = keras.Sequential([keras.Input((30,)), keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(1)])
    with pytest.raises(UsageError) as err:
        check_padding(model, RunSpec(devices=2, batch_size=64), 455)
    assert str(err.value) == (
        "each epoch's last batch of 7 samples does not split evenly across 2 devices, so the devices also train "
        "on 1 zero-weight copy of its samples, which BatchNormalization layer 'bn' would count in its batch "
        "statistics: use --drop-remainder"
    )
    check_padding(model, RunSpec(devices=2, batch_size=64, drop_remainder=True), 455)  # nothing padded


def test_more_devices_than_the_machine_has(capsys):
    import os

    from backendlab.cli import main

    many = (os.cpu_count() or 1) + 1
    assert main(["train", "--devices", str(many), "--batch-size", str(8 * many)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"backendlab: error: asked for {many} devices but this machine has no GPU and {os.cpu_count()} CPU cores "
        f"(at most one virtual device per core): use --devices {os.cpu_count()} or fewer"
    )


def test_two_devices_draw_the_masks_one_device_draws(backend, tmp_path):
    """Portable randomness counts a sample's draws from its place in the global batch: dropout trains alike."""
    model = "tests/fixtures/random_models.py:dense_dropout"
    one, two, w1, w2 = train_one_and_two_devices(tmp_path, model=model, data="sequences", epochs=1, batch_size=64)
    assert len(one["stochastic_layers"]) == len(two["stochastic_layers"]) == 2
    np.testing.assert_allclose(two["step_losses"], one["step_losses"], rtol=EXACT, atol=0)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(b, a, rtol=EXACT, atol=EXACT)
