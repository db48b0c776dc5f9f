"""Bad input data and user code get one exact line, before training; odd but usable dtypes train.

Every message here is part of the API: each test spells the whole line out.
"""

from __future__ import annotations

import textwrap
import zipfile

import numpy as np
import pytest
from helpers import write_npz

from backendlab.data import DATASETS, Target, load_dataset
from backendlab.errors import UsageError
from backendlab.specs import load_callable

NONFINITE = "remove or replace non-finite values before training"

NOT_NUMERIC = "backendlab trains on bool, integer and float arrays: encode strings and objects as numbers first"

NOT_NPZ = "write it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"


def write_data_function(tmp_path, body: str, name: str = "user_data.py") -> str:
    """A ``file.py:load`` spec whose ``load()`` runs ``body`` (with numpy as np)."""
    path = tmp_path / name
    path.write_text("import numpy as np\n\n\ndef load():\n" + textwrap.indent(textwrap.dedent(body), "    "))
    return f"{path}:load"


def usage_error(spec: str) -> str:
    with pytest.raises(UsageError) as err:
        load_dataset(spec)
    return str(err.value)


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    ragged = np.empty(20, dtype=object)
    ragged[:] = [[1.0, 2.0]] * 10 + [[1.0]] * 10
    path = write_npz(tmp_path, x_train=ragged)
    assert usage_error(path) == (
        f"data file '{path}': x_train is an object array, and backendlab loads .npz files without pickles: "
        "save plain numeric arrays"
    )


@pytest.mark.parametrize(
    "content",
    [b"x_train,y_train\n1,0\n", b"", np.lib.format.MAGIC_PREFIX + b"\x01\x00"],
    ids=["text", "empty", "npy-header"],
)
def test_file_that_is_not_an_npz_archive(tmp_path, content):
    path = tmp_path / "table.npz"
    path.write_bytes(content)
    assert usage_error(str(path)) == f"data file '{path}' is not an .npz archive: {NOT_NPZ}"


def test_npy_file_named_npz(tmp_path):
    path = tmp_path / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((4, 2)))
    assert usage_error(str(path)) == f"data file '{path}' is not an .npz archive: {NOT_NPZ}"


def test_npz_member_that_cannot_be_read(tmp_path):
    path = tmp_path / "damaged.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            zf.writestr(f"{key}.npy", np.lib.format.MAGIC_PREFIX + b"\x01\x00\x10\x00{not a header}   ")
    assert usage_error(str(path)) == (
        f"data file '{path}': x_train cannot be read: write the file again with numpy.savez"
    )


def test_npz_missing_one_array(tmp_path):
    path = write_npz(tmp_path, y_test=None)
    assert usage_error(path) == (f"data file '{path}' lacks y_test: an .npz needs x_train, y_train, x_test, y_test")


def test_npz_with_no_training_samples(tmp_path):
    path = write_npz(tmp_path, "empty.npz", x_train=np.zeros((0, 5)), y_train=np.zeros(0, dtype=int))
    assert usage_error(path) == (
        "data 'empty.npz': x_train and y_train have no samples: the train and test splits each need at least one"
    )


def test_data_function_with_no_test_samples(tmp_path):
    spec = write_data_function(tmp_path, "x = np.ones((8, 3))\nreturn (x, np.arange(8) % 2), (x[:0], np.arange(0))\n")
    assert usage_error(spec) == (
        f"data '{spec}': x_test and y_test have no samples: the train and test splits each need at least one"
    )


def test_test_split_counts_differ(tmp_path):
    path = write_npz(tmp_path, "short.npz", y_test=np.zeros(5, dtype=int))
    assert usage_error(path) == "data 'short.npz': x_test and y_test have different numbers of samples [5, 6]"


def test_dict_inputs_counts_differ(tmp_path):
    spec = write_data_function(
        tmp_path,
        """
        x = {"a": np.ones((10, 2)), "b": np.ones((9, 2))}
        y = np.arange(10) % 2
        return (x, y), (x, y)
        """,
    )
    assert usage_error(spec) == f"data '{spec}': x_train and y_train have different numbers of samples [9, 10]"


def test_test_rows_shaped_unlike_train_rows(tmp_path):
    path = write_npz(tmp_path, "wide.npz", x_test=np.zeros((6, 7)))
    assert usage_error(path) == (
        "data 'wide.npz': x_test has rows of shape (7,) but x_train has (5,): "
        "give both splits the same shape per sample"
    )


def test_empty_dict_of_inputs(tmp_path):
    spec = write_data_function(tmp_path, "y = np.arange(4) % 2\nreturn ({}, y), ({}, y)\n")
    assert usage_error(spec) == f"data '{spec}': x_train is an empty dict: give one array per input or output"


def test_scalar_labels(tmp_path):
    path = write_npz(tmp_path, "scalar.npz", y_train=np.float64(1.0))
    assert usage_error(path) == "data 'scalar.npz': y_train is a scalar: give an array with one row per sample"


def test_nan_in_features_names_the_first_index(tmp_path):
    x = np.random.default_rng(1).normal(size=(20, 5))
    x[15, 0] = x[12, 3] = np.nan
    path = write_npz(tmp_path, "nan.npz", x_train=x)
    assert usage_error(path) == f"data 'nan.npz': x_train has NaN at index (12, 3): {NONFINITE}"


def test_inf_in_test_images(tmp_path):
    x = np.zeros((6, 4, 4, 1), dtype="float32")
    x[2, 1, 3, 0] = np.inf
    path = write_npz(tmp_path, "img.npz", x_train=np.zeros((20, 4, 4, 1)), x_test=x)
    assert usage_error(path) == f"data 'img.npz': x_test has inf at index (2, 1, 3, 0): {NONFINITE}"


def test_minus_inf_in_regression_labels(tmp_path):
    y = np.linspace(0, 1, 20)
    y[4] = -np.inf
    path = write_npz(tmp_path, "reg.npz", y_train=y)
    assert usage_error(path) == f"data 'reg.npz': y_train has -inf at index 4: {NONFINITE}"


def test_nan_in_the_second_of_two_dict_inputs(tmp_path):
    spec = write_data_function(
        tmp_path,
        """
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(40, 4)), rng.normal(size=(40, 3))
        b[7, 2] = np.nan  # sample 7 is in the train split at row 3
        y = (a.sum(1) > 0).astype("int64")
        x = {"a": a, "b": b}
        return ({k: v[4:] for k, v in x.items()}, y[4:]), ({k: v[:4] for k, v in x.items()}, y[:4])
        """,
    )
    assert usage_error(spec) == f"data '{spec}': x_train['b'] has NaN at index (3, 2): {NONFINITE}"


def test_nan_in_column_vector_labels(tmp_path):
    y_test = np.ones((6, 1))
    y_test[1, 0] = np.nan
    path = write_npz(tmp_path, "col.npz", y_train=np.ones((20, 1)), y_test=y_test)
    assert usage_error(path) == f"data 'col.npz': y_test has NaN at index (1, 0): {NONFINITE}"


def test_nan_in_a_bundled_dataset_is_refused_too(monkeypatch):
    clean = DATASETS["breast_cancer"]

    def poisoned(seed):
        data = clean(seed)
        data.x_test[5, 29] = np.nan
        return data

    monkeypatch.setitem(DATASETS, "breast_cancer", poisoned)
    assert usage_error("breast_cancer") == f"data 'breast_cancer': x_test has NaN at index (5, 29): {NONFINITE}"


def test_string_features_are_refused(tmp_path):
    path = write_npz(tmp_path, "words.npz", x_train=np.array([["red", "big"]] * 20))
    assert usage_error(path) == f"data 'words.npz': x_train has dtype <U3: {NOT_NUMERIC}"


def test_string_labels_are_refused(tmp_path):
    spec = write_data_function(
        tmp_path, 'x = np.ones((4, 2))\ny = np.array(["cat", "dog", "cat", "cat"])\nreturn (x, y), (x, y)\n'
    )
    assert usage_error(spec) == f"data '{spec}': y_train has dtype <U3: {NOT_NUMERIC}"


def test_mixed_python_objects_are_refused(tmp_path):
    spec = write_data_function(
        tmp_path, 'x = np.ones((3, 2))\ny = [0, "one", None]\nreturn (x, y), (x, np.arange(3) % 2)\n'
    )
    assert usage_error(spec) == f"data '{spec}': y_train has dtype object: {NOT_NUMERIC}"


@pytest.mark.parametrize(
    "dtype, becomes",
    [("float64", "float32"), ("float16", "float32"), ("bool", "float32"), ("int64", "int32"), ("uint8", "int32")],
)
def test_float_features_become_float32_and_integer_features_int32(tmp_path, dtype, becomes):
    x = np.random.default_rng(0).integers(0, 2, size=(20, 5)).astype(dtype)
    data = load_dataset(write_npz(tmp_path, x_train=x, x_test=x[:6]))
    assert data.x_train.dtype == data.x_test.dtype == np.dtype(becomes)
    assert np.array_equal(data.x_train, x.astype(becomes))


@pytest.mark.parametrize(
    "y, dtype, target",
    [
        (np.arange(20) % 2 == 0, np.int32, Target("binary", 1)),
        ((np.arange(20) % 3).astype("int64"), np.int32, Target("multiclass", 3)),
        ((np.arange(20) % 3).astype("uint8")[:, None], np.int32, Target("multiclass", 3)),
        (np.linspace(0, 1, 20), np.float32, Target("regression", 1)),
    ],
    ids=["bool", "int64", "uint8-column", "float64"],
)
def test_labels_become_int32_classes_or_float32_values(tmp_path, y, dtype, target):
    data = load_dataset(write_npz(tmp_path, y_train=y, y_test=y[:6]))
    assert data.y_train.dtype == data.y_test.dtype == dtype
    assert data.target == target


BROKEN = "import numpy as np\n\ndef load(:\n    pass\n"

RAISES = "import numpy as np\nTABLE = np.load('nowhere.npy')\n"


def test_syntax_error_in_a_data_file(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    with pytest.raises(UsageError) as err:
        load_dataset(f"{path}:load")
    assert str(err.value) == f"data file '{path}' failed to import: SyntaxError at {path}:3: invalid syntax"


def test_error_raised_while_importing_a_model_file(tmp_path):
    path = tmp_path / "raises.py"
    path.write_text(RAISES)
    with pytest.raises(UsageError) as err:
        load_callable(f"{path}:build", "model")
    assert str(err.value) == (
        f"model file '{path}' failed to import: FileNotFoundError at {path}:2: "
        "[Errno 2] No such file or directory: 'nowhere.npy'"
    )


def test_syntax_error_in_a_module(tmp_path, monkeypatch):
    (tmp_path / "inputs_broken_pkg").mkdir()
    (tmp_path / "inputs_broken_pkg" / "__init__.py").write_text("")
    (tmp_path / "inputs_broken_pkg" / "models.py").write_text(BROKEN.replace("load", "build"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError) as err:
        load_callable("inputs_broken_pkg.models:build", "model")
    path = tmp_path / "inputs_broken_pkg" / "models.py"
    assert str(err.value) == (
        f"model module 'inputs_broken_pkg.models' failed to import: SyntaxError at {path}:3: invalid syntax"
    )


def test_error_raised_while_importing_a_module(tmp_path, monkeypatch):
    (tmp_path / "inputs_raising_data.py").write_text(RAISES)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError) as err:
        load_dataset("inputs_raising_data:load")
    path = tmp_path / "inputs_raising_data.py"
    assert str(err.value) == (
        f"data module 'inputs_raising_data' failed to import: FileNotFoundError at {path}:2: "
        "[Errno 2] No such file or directory: 'nowhere.npy'"
    )


def test_a_model_files_own_functions_and_classes_are_its_custom_objects(tmp_path, monkeypatch):
    """What a .keras file may name by name only: what the user wrote, here or in a file of theirs it imports,
    by the object's own name; not what it takes from an installed library, nor what is private."""
    (tmp_path / "user_losses.py").write_text("def focal(y_true, y_pred):\n    return y_pred\n")
    path = tmp_path / "model_file.py"
    path.write_text(
        textwrap.dedent(
            """
            from math import sqrt
            from numpy import mean
            from user_losses import focal

            def hit_rate(y_true, y_pred):
                return y_pred

            loss_fn = hit_rate

            class Scale:
                pass

            def _helper():
                pass

            def build():
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from backendlab.specs import user_objects

    found = user_objects(f"{path}:build", "model")
    assert sorted(found) == ["Scale", "build", "focal", "hit_rate"]
    assert found["focal"].__module__ == "user_losses"
    assert user_objects("mlp", "model") == {}  # a zoo name: nothing of the user's
