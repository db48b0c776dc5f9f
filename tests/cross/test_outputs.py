"""Where results go, and what is resumed from, fail before any work with one line and exit 2.

Tests run as root here, which may write anywhere chmod forbids; a path under a regular
file cannot be written by anyone, so that is the unwritable place these tests use.
"""

from __future__ import annotations

import shutil
import zipfile

import pytest
from helpers import FIXTURES, holds_only, run_cli


def test_compare_out_under_a_file_exits_2_before_any_worker(backend, a_file):
    proc = run_cli("compare", "--backends", backend, "--epochs", "1", "--out", f"{a_file}/out")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"backendlab: error: --out '{a_file}/out' cannot be written: '{a_file}' is a file, not a folder"
    )
    holds_only(a_file.parent, "notes.txt")


def test_compare_out_that_is_a_file_exits_2(backend, a_file):
    proc = run_cli("compare", "--backends", backend, "--epochs", "1", "--out", str(a_file))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"backendlab: error: --out '{a_file}' cannot be written: it is a file, not a folder"
    assert a_file.read_text() == "not a folder\n"


def test_a_model_the_worker_finds_wrong_leaves_no_folder_behind(backend, tmp_path):
    # The worker's job files (job.json, progress.json, worker.log) stayed, and the next run went to DIR-2.
    model = "tests/fixtures/user_models.py:three_outputs"
    out = tmp_path / "run"
    proc = run_cli("compare", "--backends", backend, "--model", model, "--epochs", "1", "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"backendlab: error: model '{model}' output has shape (None, 3) but data 'breast_cancer' has "
        "2 classes (binary): its last dimension must be 1 (or 2 softmax units)"
    )
    assert not out.exists()
    out.mkdir()  # a folder the user made, empty: kept, and left empty
    proc = run_cli("compare", "--backends", backend, "--model", model, "--epochs", "1", "--out", str(out))
    assert proc.returncode == 2 and out.is_dir() and not any(out.iterdir())


def _random_bytes(path):
    path.write_bytes(bytes(range(256)) * 4)


def _zip_without_config(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.15.1"}')


def _with_a_lambda_layer(path):
    import keras

    model = keras.Sequential([keras.Input((30,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    model.save(path)


@pytest.mark.parametrize(
    "make, reason",
    [
        (_random_bytes, "is not a saved .keras model file: it is not a zip archive"),
        (_zip_without_config, "is not a saved .keras model file: the archive holds no config.json"),
        (
            _with_a_lambda_layer,
            "cannot be loaded: its Lambda layer 'lambda' holds Python code, "
            "which Keras does not load from a file (safe mode)",
        ),
    ],
    ids=["random bytes", "zip without config.json", "Lambda layer"],
)
def test_resume_from_a_file_that_is_not_a_loadable_model_exits_2(make, reason, tmp_path):
    path = tmp_path / "x.keras"
    make(path)
    proc = run_cli("train", "--resume", str(path), "--epochs", "1", "--save", str(tmp_path / "after.keras"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"backendlab: error: '{path}' {reason}"
    assert not (tmp_path / "after.keras").exists()


def test_resume_finds_an_unregistered_class_in_its_model_file_and_says_when_the_file_is_gone(backend, tmp_path):
    mine = tmp_path / "mine.py"
    shutil.copy(FIXTURES / "faulty_models.py", mine)
    path = tmp_path / "faulty.keras"
    proc = run_cli("train", "--model", f"{mine}:build", "--epochs", "1", "--save", str(path))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "--resume", str(path), "--epochs", "1")
    assert proc.returncode == 0, proc.stderr  # its class Fault is found in the model's file: no registry needed
    mine.unlink()
    proc = run_cli("train", "--resume", str(path), "--epochs", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"backendlab: error: model file '{mine}' does not exist"
