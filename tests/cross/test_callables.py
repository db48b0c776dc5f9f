"""Factories given as Python objects reach every backend: a closure over plain values, a class defined in
``__main__`` (a real script, run by ``python``), and a ``keras.Model`` instance, whose weights are the start.

The script imports Keras, as a user's notebook does, and sends its objects (``backendlab.callables.send``,
what ``compare`` and ``assert_backends_agree`` do with them); this process imports no framework and runs
the backends on the session's warm pool.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from helpers import QUIET_ENV, run

from backendlab.compare import compare
from backendlab.testing import assert_backends_agree

#: Run as __main__: a custom layer class and a model instance, sent; the model's weights' checksum printed.
SCRIPT = """
import json, sys
import numpy as np
import keras
from backendlab.callables import send
from backendlab.init import weights_checksum


class Scale(keras.layers.Layer):
    def build(self, shape):
        self.scale = self.add_weight(shape=shape[-1:], initializer="random_normal")

    def call(self, x):
        return keras.ops.tanh(x * self.scale)


model = keras.Sequential([keras.Input((4,)), Scale(), keras.layers.Dense(1, activation="sigmoid")])
rng = np.random.default_rng(7)  # weights of the user's own, which no initializer of any backend draws
model.set_weights([rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()])
folder = sys.argv[1]
print(json.dumps({
    "class": send(Scale, "layer factory", folder, "scale"),
    "model": send(model, "model factory", folder, "model"),
    "checksum": weights_checksum(model.get_weights()),
    "module": Scale.__module__,
}))
"""


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sent")
    script = folder / "notebook.py"
    script.write_text(SCRIPT)
    done = run([sys.executable, str(script), str(folder)], env={**QUIET_ENV, "KERAS_BACKEND": "jax"}, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def dense_of(units: int):
    """A closure over a plain value: it cannot be imported by name, so it goes by value."""

    def make():
        import keras

        return keras.layers.Dense(units, activation="relu")

    return make


def test_a_closure_agrees_on_every_backend(pool):
    x = np.random.default_rng(0).standard_normal((4, 5)).astype("float32")
    report = assert_backends_agree(dense_of(3), x, pool=pool, saving=False)
    assert report.factory == "make"
    assert len(report.backends) == 3
    assert {c.backend for c in report.checks} == set(report.backends[1:])  # each against the reference
    assert not report.failures


def test_a_class_defined_in_main_agrees_and_its_saved_files_load_on_every_backend(pool, sent):
    assert sent["module"] == "__main__"
    x = np.random.default_rng(1).standard_normal((4, 5)).astype("float32")
    report = assert_backends_agree(sent["class"], x, pool=pool)
    assert report.factory == "Scale"
    saved = [c for c in report.checks if ".keras loaded on" in c.what]
    assert len(saved) == 9  # every backend's file, loaded on every backend: the class went along as a custom object
    assert not report.failures


def test_a_model_instance_trains_from_its_own_weights_on_every_backend(pool, sent, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((24, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int32")

    report = compare(
        model=sent["model"],
        data=lambda: ((x[:16], y[:16]), (x[16:], y[16:])),  # a closure over arrays, sent by value
        epochs=1,
        batch_size=8,
        floor=False,
        portability=False,  # loading the saved files with the user's classes: the __main__ class's test
        out=str(tmp_path / "out"),
        pool=pool,
    )
    assert {name: r.initial_checksum for name, r in report.backends.items()} == dict.fromkeys(
        report.backends, sent["checksum"]
    )
    assert report.verdict == "agree"
