"""Where results go, and what is resumed from, fail before any work with one line and exit 2.

Tests run as root here, which may write anywhere chmod forbids; a path under a regular
file cannot be written by anyone, so that is the unwritable place these tests use.
"""

from __future__ import annotations

import zipfile

import pytest
from helpers import FIXTURES, run_cli

from backendlab.errors import UsageError
from backendlab.results import check_writable


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a folder\n")
    return path


def _only(folder, *names):
    """Nothing was written: the folder holds what the test put there, and no more."""
    assert sorted(p.name for p in folder.rglob("*")) == sorted(names)


# --- the check itself, without a framework ---------------------------------------------------


def test_check_writable_accepts_new_paths_in_writable_folders_and_creates_nothing(tmp_path):
    check_writable(tmp_path / "deep" / "er" / "m.keras", "--save")
    check_writable(tmp_path / "out", "--out", folder=True)
    check_writable(tmp_path, "--out", folder=True)  # an existing folder is reused
    check_writable("relative.json", "--json")
    _only(tmp_path)


def test_check_writable_names_the_file_in_the_way(a_file):
    with pytest.raises(UsageError) as err:
        check_writable(a_file / "deep" / "out", "--out", folder=True)
    assert str(err.value) == f"--out '{a_file}/deep/out' cannot be written: '{a_file}' is a file, not a folder"


# --- compare ----------------------------------------------------------------------------------


def test_compare_out_under_a_file_exits_2_before_any_worker(backend, a_file):
    proc = run_cli("compare", "--backends", backend, "--epochs", "1", "--out", f"{a_file}/out")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"backendlab: error: --out '{a_file}/out' cannot be written: '{a_file}' is a file, not a folder"
    )
    _only(a_file.parent, "notes.txt")


def test_compare_out_that_is_a_file_exits_2(backend, a_file):
    proc = run_cli("compare", "--backends", backend, "--epochs", "1", "--out", str(a_file))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"backendlab: error: --out '{a_file}' cannot be written: it is a file, not a folder"
    assert a_file.read_text() == "not a folder\n"


def test_compare_json_under_a_file_exits_2_and_writes_nothing(backend, a_file, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("compare", "--backends", backend, "--out", str(out), "--json", f"{a_file}/r.json")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"backendlab: error: --json '{a_file}/r.json' cannot be written: '{a_file}' is a file, not a folder"
    )
    _only(tmp_path, "notes.txt")


# --- train ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, name, reason",
    [
        ("--save", "sub/m.keras", "'{file}' is a file, not a folder"),
        ("--json", "sub/r.json", "'{file}' is a file, not a folder"),
    ],
)
def test_train_output_under_a_file_exits_2_before_training(flag, name, reason, a_file):
    target = f"{a_file}/{name}"
    proc = run_cli("train", flag, target)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"backendlab: error: {flag} '{target}' cannot be written: {reason.format(file=a_file)}"
    )
    assert "Traceback" not in proc.stderr and proc.stdout == ""  # no result table: nothing trained
    _only(a_file.parent, "notes.txt")


@pytest.mark.parametrize("flag, name", [("--save", "m.keras"), ("--json", "r.json")])
def test_train_output_that_is_a_folder_exits_2(flag, name, tmp_path):
    (tmp_path / name).mkdir()
    proc = run_cli("train", flag, str(tmp_path / name))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"backendlab: error: {flag} '{tmp_path / name}' cannot be written: it is a folder"
    _only(tmp_path, name)


# --- train --resume on a file that is not a model backendlab can load -----------------------


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


def test_resume_from_a_model_with_an_unknown_class_exits_2_naming_it(backend, tmp_path):
    path = tmp_path / "faulty.keras"
    proc = run_cli("train", "--model", "tests/fixtures/faulty_models.py:build", "--epochs", "1", "--save", str(path))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "--resume", str(path), "--epochs", "1")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"backendlab: error: '{path}' cannot be loaded: TypeError: Could not locate class 'Fault'.")


# --- a .keras file saved on PyTorch, loaded on this backend -----------------------------------------------------------

SAVED_ON_TORCH = FIXTURES / "saved_on_torch.keras"  # the seed's MLP, model.save() under torch after 2 SGD steps


def test_a_model_compiled_and_saved_on_torch_loads_here_with_its_optimizer(backend):
    import keras

    from backendlab.training import load_model

    model = load_model(SAVED_ON_TORCH)
    optimizer = model.optimizer
    assert type(optimizer).__name__ == "SGD" and optimizer.nesterov and optimizer.momentum == 0.9
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2  # its state came with it
    if backend != "torch":
        # Keras alone records the optimizer under torch's own module, and cannot load it without torch.
        with pytest.raises(TypeError, match="keras.src.backend.torch.optimizers.torch_sgd cannot be imported"):
            keras.saving.load_model(SAVED_ON_TORCH)
