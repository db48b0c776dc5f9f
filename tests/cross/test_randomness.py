"""Portable randomness across backends: the same masks and draws, and `train --seed 0` of a model that
draws as it trains gives the same history on JAX, TensorFlow and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import on_backends

from backendlab.backends import BACKEND_NAMES

# Each backend in its own warm worker: one Dropout layer's output, every portable function's draw, and a
# short training run of a model with Dropout, SpatialDropout1D, GaussianNoise and an LSTM's two dropouts.
SCRIPT = """
import numpy as np
import keras
from backendlab.training import randomness, run_training

x = np.ones((8, 16), "float32")
with randomness.portable():
    layer = keras.layers.Dropout(0.5, seed=3)
    g = keras.random.SeedGenerator(11)
    draws = {
        "dropout layer": layer(x, training=True),
        "uniform": keras.random.uniform((4, 5), seed=g),
        "normal": keras.random.normal((4, 5), seed=g),
        "truncated_normal": keras.random.truncated_normal((4, 5), seed=g),
        "randint": keras.random.randint((4, 5), 0, 100, seed=g),
        "shuffle": keras.random.shuffle(np.arange(12), seed=g),
        "categorical": keras.random.categorical(np.zeros((2, 6), "float32"), 4, seed=g),
    }
run = run_training("tests/fixtures/random_models.py:every_draw", "sequences", epochs=2, seed=0)
result = {
    "draws": {name: keras.ops.convert_to_numpy(v).tolist() for name, v in draws.items()},
    "history": run.history,
    "stochastic": run.stochastic_layers,
}
"""


@pytest.fixture(scope="module")
def runs(pool, tmp_path_factory) -> dict[str, dict]:
    return on_backends(pool, SCRIPT, tmp_path_factory.mktemp("randomness"))


def test_one_dropout_layers_mask_is_the_same_on_every_backend(runs):
    masks = {backend: np.array(runs[backend]["draws"]["dropout layer"]) for backend in BACKEND_NAMES}
    ref = masks[BACKEND_NAMES[0]]
    assert 0 < (ref == 0).mean() < 1 and set(np.unique(ref)) == {0.0, 2.0}
    for backend in BACKEND_NAMES[1:]:
        np.testing.assert_array_equal(masks[backend], ref, err_msg=backend)


def test_every_portable_draw_is_the_same_on_every_backend(runs):
    ref = runs[BACKEND_NAMES[0]]["draws"]
    for backend in BACKEND_NAMES[1:]:
        for name, values in runs[backend]["draws"].items():
            # log, cos and erfinv round differently by a few float32 ulps; the bits and the rest are exact
            np.testing.assert_allclose(values, ref[name], rtol=0, atol=2e-6, err_msg=f"{backend} {name}")


def test_a_model_that_draws_as_it_trains_gives_the_same_history_on_every_backend(runs):
    ref = runs[BACKEND_NAMES[0]]
    assert len(ref["stochastic"]) == 4  # GaussianNoise, SpatialDropout1D, the LSTM's cell, Dropout
    for backend in BACKEND_NAMES[1:]:
        mine = runs[backend]
        assert mine["stochastic"] == ref["stochastic"]
        for key, values in ref["history"].items():
            np.testing.assert_allclose(mine["history"][key], values, rtol=1e-5, atol=0, err_msg=f"{backend} {key}")
