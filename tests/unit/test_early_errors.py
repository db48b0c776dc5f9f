"""Bad names, files and flags are refused in the orchestrating process before any worker starts.

Each command here runs in this process, so the unit layer's fixture proves it imported no framework;
where compare would start workers, its pool is replaced by one that fails the test if it is made.
"""

from __future__ import annotations

import textwrap

import pytest
from helpers import FIXTURES, write_npz

from backendlab.cli import main
from backendlab.errors import UsageError
from backendlab.specs import check_spec, load_callable

USER_MODELS = FIXTURES / "user_models.py"
ZOO = "mlp, cnn, rnn, transformer, functional, mobilenet, resnet, bert, gpt"
KERAS_BACKEND_ERROR = (
    "backendlab: error: KERAS_BACKEND='jaxx' is not a backend backendlab supports: "
    "set KERAS_BACKEND to one of jax, tensorflow, torch"
)


@pytest.fixture
def no_workers(monkeypatch):
    """compare's pool, made only if a run starts: here it fails the test instead."""

    def started(*args, **kwargs):
        raise AssertionError("compare started its workers")

    monkeypatch.setattr("backendlab.compare.run.WorkerPool", started)


def written(folder, name: str, source: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def refused(capsys, *argv: str) -> str:
    """The command's one error line; it must exit 2."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# --- the commands ---------------------------------------------------------------------------------


def test_compare_refuses_an_unknown_zoo_model_before_any_worker(tmp_path, capsys, no_workers):
    out = tmp_path / "out"
    assert refused(capsys, "compare", "--model", "mpl", "--out", str(out)) == (
        f"backendlab: error: unknown model 'mpl': use one of {ZOO}, "
        "or path/to/file.py:build / package.module:build returning a keras.Model"
    )
    assert not out.exists()


def test_compare_refuses_a_missing_data_file_before_any_worker(tmp_path, capsys, no_workers):
    missing = tmp_path / "nothere.npz"
    out = tmp_path / "out"
    assert refused(capsys, "compare", "--data", str(missing), "--out", str(out)) == (
        f"backendlab: error: data file '{missing}' does not exist"
    )
    assert not out.exists()


def test_compare_refuses_an_npz_without_its_four_arrays(tmp_path, capsys, no_workers):
    path = write_npz(tmp_path, y_test=None)
    assert refused(capsys, "compare", "--data", path, "--out", str(tmp_path / "out")) == (
        f"backendlab: error: data file '{path}' lacks y_test: an .npz needs x_train, y_train, x_test, y_test"
    )


def test_compare_refuses_a_missing_data_function_file(tmp_path, capsys, no_workers):
    spec = f"{tmp_path / 'gone.py'}:load"
    assert refused(capsys, "compare", "--data", spec, "--out", str(tmp_path / "out")) == (
        f"backendlab: error: data file '{tmp_path / 'gone.py'}' does not exist"
    )


def test_compare_refuses_a_model_file_without_the_function(tmp_path, capsys, no_workers):
    spec = f"{USER_MODELS}:nothing"
    assert refused(capsys, "compare", "--model", spec, "--out", str(tmp_path / "out")) == (
        f"backendlab: error: model '{spec}': '{USER_MODELS}' has no function 'nothing'"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "--out", "OUT"],
        ["bench", "--quick", "--out", "OUT"],
        ["tune", "--out", "OUT"],
        ["check-layer", f"{FIXTURES}/parity_layers.py:dense", "--input-shape", "4,6"],
    ],
    ids=["compare", "bench", "tune", "check-layer"],
)
def test_a_keras_backend_that_is_no_backend_is_refused_as_train_refuses_it(
    command, tmp_path, capsys, monkeypatch, no_workers
):
    monkeypatch.setenv("KERAS_BACKEND", "jaxx")
    out = tmp_path / "out"
    assert refused(capsys, *[str(out) if arg == "OUT" else arg for arg in command]) == KERAS_BACKEND_ERROR
    assert not out.exists()


def test_resume_from_a_missing_file_says_it_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nothere.keras"
    assert refused(capsys, "train", "--resume", str(missing)) == (
        f"backendlab: error: --resume '{missing}' does not exist: give the path of a saved .keras model"
    )


def test_resume_from_a_file_that_is_no_keras_archive_is_refused_before_keras_is_imported(tmp_path, capsys):
    path = tmp_path / "notes.keras"
    path.write_text("not a zip")
    assert refused(capsys, "train", "--resume", str(path)) == (
        f"backendlab: error: '{path}' is not a saved .keras model file: it is not a zip archive"
    )


def test_train_refuses_an_unknown_model_before_importing_a_framework(capsys):
    assert refused(capsys, "train", "--model", "mpl").startswith("backendlab: error: unknown model 'mpl': use one of")


def test_bench_refuses_a_missing_model_file_and_data_file(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert refused(capsys, "bench", "--models", "nothere.py:build", "--out", out) == (
        "backendlab: error: model file 'nothere.py' does not exist"
    )
    assert refused(capsys, "bench", "--models", f"{USER_MODELS}:compiled_adam", "--data", "gone.npz", "--out", out) == (
        "backendlab: error: data file 'gone.npz' does not exist"
    )


# --- file.py:function, read without importing it ----------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "def build():\n    pass\n",
        "build = make_builder()\n",
        "build: object = None\n",
        "from models_lib import build\n",
        "import models_lib as build\n",
        "if FAST:\n    def build():\n        pass\nelse:\n    build = None\n",
        "try:\n    from fast import build\nexcept ImportError:\n    from slow import build\n",
        "for build in builders:\n    pass\n",
        "with open('x') as build:\n    pass\n",
        "print(build := 3)\n",
        "def install():\n    global build\n    build = 1\n",
        # Names made at run time: only importing the file can tell.
        "from models_lib import *\n",
        "def __getattr__(name):\n    return make(name)\n",
        "for name in NAMES:\n    globals()[name] = make(name)\n",
        "import sys\nsetattr(sys.modules[__name__], 'b' + 'uild', make())\n",
        "import models\nmodels.build = make()\n",
    ],
    ids=[
        "def",
        "assignment",
        "annotated",
        "from-import",
        "import-as",
        "conditional",
        "try-import",
        "for-target",
        "with-target",
        "walrus",
        "global",
        "star-import",
        "module-getattr",
        "globals",
        "setattr",
        "self-import",
    ],
)
def test_a_file_that_may_define_the_function_is_left_to_the_import(tmp_path, source):
    check_spec(f"{written(tmp_path, 'models.py', source)}:build", "model")


@pytest.mark.parametrize(
    "source",
    [
        "def build_model():\n    model = None\n    return model\n",
        "class Builder:\n    build = staticmethod(len)\n",
        "def make():\n    build = 1\n    return build\n",
        "import keras\n",
    ],
    ids=["other-name", "class-attribute", "local", "imports-only"],
)
def test_a_file_that_cannot_define_the_function_is_refused_without_importing_it(tmp_path, source):
    path = written(tmp_path, "models.py", "import keras\n" + source)  # importing it would import keras
    with pytest.raises(UsageError) as err:
        check_spec(f"{path}:build", "model")
    assert str(err.value) == f"model '{path}:build': '{path}' has no function 'build'"


def test_a_syntax_error_is_told_before_the_import_as_the_import_tells_it(tmp_path):
    path = written(tmp_path, "data.py", "import numpy\n\ndef load(:\n")
    with pytest.raises(UsageError) as early:
        check_spec(f"{path}:load", "data")
    with pytest.raises(UsageError) as late:
        load_callable(f"{path}:load", "data")
    assert str(early.value) == str(late.value)
    assert str(early.value) == f"data file '{path}' failed to import: SyntaxError at {path}:3: invalid syntax"


def test_a_module_spec_is_read_without_running_its_package(tmp_path, monkeypatch):
    package = tmp_path / "early_errors_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "models.py").write_text("def build_model():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError) as err:
        check_spec("early_errors_pkg.models:build", "model")
    assert str(err.value) == "model 'early_errors_pkg.models:build': 'early_errors_pkg.models' has no function 'build'"
    check_spec("early_errors_pkg.models:build_model", "model")
    check_spec("early_errors_pkg.elsewhere:build", "model")  # not found below the package: the import will say


def test_a_module_spec_whose_package_is_not_installed_is_refused(tmp_path):
    with pytest.raises(UsageError) as err:
        check_spec("no_such_pkg.models:build", "model")
    assert str(err.value) == "model module 'no_such_pkg.models' cannot be imported: No module named 'no_such_pkg'"
