"""Bad input data and user code get one exact line, before training; odd but usable dtypes train.

Every message here is part of the API: each test spells the whole line out.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import FIXTURES, run_cli, write_npz

NONFINITE = "remove or replace non-finite values before training"


def test_uint8_images_and_bool_column_labels_train(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(48, 8, 8, 1), dtype=np.uint8)
    labels = (images.mean(axis=(1, 2, 3)) > 127)[:, None]  # bool, shape (n, 1)
    path = write_npz(
        tmp_path, "img.npz", x_train=images[:40], y_train=labels[:40], x_test=images[40:], y_test=labels[40:]
    )
    from backendlab.training import run_training

    result = run_training("cnn", path, epochs=1, batch_size=16)
    assert np.isfinite(result.history["loss"]).all() and set(result.test) == {"loss", "accuracy"}


def test_integer_ids_reach_the_model_as_integers():
    """int64 ids above 2**24 reach the model exactly, as int32, on every backend (float32 would round them)."""
    from backendlab.training import run_training

    result = run_training(
        f"{FIXTURES}/user_models.py:id_lookup", f"{FIXTURES}/user_data.py:large_ids", epochs=20, batch_size=16
    )
    assert result.test["accuracy"] == 1.0


BROKEN = "import numpy as np\n\ndef load(:\n    pass\n"


def _nan_npz(tmp_path):
    x = np.random.default_rng(1).normal(size=(20, 5))
    x[12, 3] = np.nan
    path = write_npz(tmp_path, "nan.npz", x_train=x)
    return ["--data", path], f"data 'nan.npz': x_train has NaN at index (12, 3): {NONFINITE}"


def _object_npz(tmp_path):
    path = write_npz(tmp_path, "obj.npz", y_train=np.array([0, "1"] * 10, dtype=object))
    message = (
        f"data file '{path}': y_train is an object array, and backendlab loads .npz files without pickles: "
        "save plain numeric arrays"
    )
    return ["--data", path], message


def _broken_model_file(tmp_path):
    path = tmp_path / "broken_model.py"
    path.write_text(BROKEN.replace("load", "build"))
    return [
        "--model",
        f"{path}:build",
    ], f"model file '{path}' failed to import: SyntaxError at {path}:3: invalid syntax"


def _broken_data_module(tmp_path):
    (tmp_path / "inputs_cli_data.py").write_text(BROKEN)
    message = (
        f"data module 'inputs_cli_data' failed to import: SyntaxError at {tmp_path / 'inputs_cli_data.py'}:3: "
        "invalid syntax"
    )
    return ["--data", "inputs_cli_data:load"], message


@pytest.mark.parametrize("case", [_nan_npz, _object_npz, _broken_model_file, _broken_data_module])
def test_command_line_prints_one_line_exits_2_and_writes_nothing(tmp_path, case):
    args, message = case(tmp_path)
    out = tmp_path / "result.json"
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    proc = run_cli("train", *args, "--json", str(out), env={"PYTHONPATH": pythonpath})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"backendlab: error: {message}"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not out.exists()
