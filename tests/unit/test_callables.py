"""Factories given as Python objects (backendlab.callables): what goes by reference, what by value, and the
one line for what cannot be sent. Nothing here imports a framework (the unit layer's fixture checks it)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import FRAMEWORKS

from backendlab.callables import SENT_FOLDER, by_reference, send, send_run
from backendlab.compare import Compare, CompareOptions
from backendlab.errors import UsageError
from backendlab.runspec import RunSpec
from backendlab.specs import load_callable, user_objects
from backendlab.testing import assert_backends_agree, factory_spec


def build():
    """A module-level function of this file: the workers import it from here by name."""
    import keras

    return keras.layers.Dense(2)


def data_over(x, y):
    """A data function that closes over two arrays (plain values): sent by value."""

    def data():
        return (x, y), (x[:2], y[:2])

    return data


class Tensor:
    """Stands in for torch.Tensor: only its type's module and name are looked at."""


Tensor.__module__ = "torch"


class Layer:
    """Stands in for keras.layers.Layer: its module and name, as Keras defines it."""


Layer.__module__ = "keras.src.layers.layer"
Dense = type("Dense", (Layer,), {"__module__": "keras.src.layers.core.dense"})


def test_a_module_level_function_still_goes_by_reference(tmp_path):
    here = f"{Path(__file__).resolve()}:build"
    assert by_reference(build) == here
    assert send(build, "model factory", tmp_path, "model") == here
    assert factory_spec(build) == here
    assert list(tmp_path.iterdir()) == []  # nothing written: the worker imports this file


def test_strings_pass_through_unchanged(tmp_path):
    run = RunSpec(model="cnn", data="tests/fixtures/user_data.py:arrays")
    assert send_run(run, tmp_path) == run
    assert list(tmp_path.iterdir()) == []


def test_a_closure_over_arrays_goes_by_value_and_comes_back_the_same(tmp_path):
    x, y = np.arange(12.0).reshape(6, 2), np.array([0, 1, 0, 1, 1, 0])
    before = {m for m in ("keras", *FRAMEWORKS) if m in sys.modules}
    spec = send(data_over(x, y), "data function", tmp_path, "data")
    assert spec == f"{(tmp_path / 'data.pkl').resolve()}:data"
    assert {m for m in ("keras", *FRAMEWORKS) if m in sys.modules} == before == set()
    (train, test) = load_callable(spec, "data")()
    np.testing.assert_array_equal(train[0], x)
    np.testing.assert_array_equal(test[1], y[:2])


def test_a_class_and_what_it_uses_travel_by_value_as_custom_objects(tmp_path):
    def scaled(v):
        return 2 * v

    class Scaler:
        def __call__(self):
            return scaled(3)

    spec = send(Scaler, "layer factory", tmp_path, "layer")
    assert spec.endswith("layer.pkl:Scaler")
    assert load_callable(spec, "layer factory")()() == 6
    assert sorted(user_objects(spec, "layer factory")) == ["Scaler", "scaled"]


def test_a_lambda_for_compare_is_written_to_its_out_folder_before_any_worker(tmp_path):
    # What Compare does first, before it looks for backends (none is installed where unit tests run).
    x, y = np.ones((8, 3), "float32"), np.arange(8) % 2
    run = send_run(RunSpec(model="mlp", data=lambda: ((x, y), (x, y))), tmp_path / "out" / SENT_FOLDER)
    assert run.data == f"{(tmp_path / 'out' / 'sent' / 'data.pkl').resolve()}:<lambda>"
    assert run.model == "mlp"


def factories(handle) -> dict:
    """A factory named make for each thing it captures."""
    x, lock, dense = Tensor(), threading.Lock(), Dense()

    def over_file():
        def make():
            return handle.read()

        return make

    def over_tensor():
        def make():
            return x

        return make

    def over_lock():
        def make():
            with lock:
                return None

        return make

    def over_layer():
        def make():
            return dense

        return make

    return {"file": over_file(), "tensor": over_tensor(), "lock": over_lock(), "layer": over_layer()}


@pytest.mark.parametrize(
    ("captured", "message"),
    [
        (
            "file",
            "model factory 'make' captures 'handle' (an open file), which cannot be sent to the other "
            "backends' workers: open it inside the function",
        ),
        (
            "tensor",
            "model factory 'make' captures 'x' (a torch.Tensor), which cannot be sent to the other "
            "backends' workers: create it inside the function, or capture a numpy array",
        ),
        (
            "lock",
            "model factory 'make' captures 'lock' (a lock), which cannot be sent to the other "
            "backends' workers: create it inside the function",
        ),
        (
            "layer",
            "model factory 'make' captures 'dense' (a keras.Dense), which cannot be sent to the other "
            "backends' workers: create it inside the function, or pass the model itself",
        ),
    ],
)
def test_a_factory_that_cannot_be_sent_gets_one_line_before_any_worker(tmp_path, captured, message):
    with open(__file__) as handle:
        make = factories(handle)[captured]
        with pytest.raises(UsageError) as raised:
            send(make, "model factory", tmp_path, "model")
    assert str(raised.value) == message
    assert list(tmp_path.iterdir()) == []


def test_compare_and_the_parity_helper_refuse_it_in_the_same_line(tmp_path):
    x = Tensor()
    line = (
        "{what} '<lambda>' captures 'x' (a torch.Tensor), which cannot be sent to the other backends' workers: "
        "create it inside the function, or capture a numpy array"
    )
    with pytest.raises(UsageError) as raised:
        Compare(CompareOptions(run=RunSpec(model=lambda: x), out=str(tmp_path / "out")))
    assert str(raised.value) == line.format(what="model factory")
    with pytest.raises(UsageError) as raised:
        assert_backends_agree(lambda: [x], np.ones((2, 3), "float32"))
    assert str(raised.value) == line.format(what="layer factory")


def test_a_generator_is_refused_and_cloudpickles_refusal_names_the_factory(tmp_path):
    batches = (i for i in range(3))
    with pytest.raises(UsageError) as raised:
        send(lambda: batches, "data function", tmp_path, "data")
    assert str(raised.value) == (
        "data function '<lambda>' captures 'batches' (a generator), which cannot be sent to the other backends' "
        "workers: capture a list of its items, or a function that makes the generator"
    )
    ready = threading.Condition()  # holds a lock: cloudpickle refuses it, and the line names it
    with pytest.raises(UsageError) as raised:
        send(lambda: ready, "data function", tmp_path, "data")
    assert str(raised.value) == (
        "data function '<lambda>' captures 'ready' (a threading.Condition), which cannot be sent to the other "
        "backends' workers (TypeError: cannot pickle '_thread.RLock' object): create it inside the function"
    )
    with pytest.raises(UsageError) as raised:
        send(3, "model factory", tmp_path, "model")
    assert str(raised.value) == (
        "model factory must be a function, a class, a keras.Model or a string like path/to/file.py:function, got int"
    )
