"""Portable randomness on one backend: Random123's known answers, eager equals compiled, a sample's draw
does not depend on how the batch is split, and ``backend`` mode keeps Keras's own generators."""

from __future__ import annotations

import numpy as np
import pytest

from backendlab.training import randomness

#: Random123's known-answer vectors for Threefry-2x32, 20 rounds (kat_vectors): key, counter -> output.
KATS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def _int32(words):
    return [np.array(w, dtype=np.uint32).astype(np.int32) for w in words]


def _numpy(x) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.mark.parametrize("key, counter, expected", KATS)
def test_threefry_gives_random123s_known_answers(backend, key, counter, expected):
    import keras

    counter = [keras.ops.convert_to_tensor(np.array([w])) for w in _int32(counter)]
    key = [keras.ops.convert_to_tensor(w) for w in _int32(key)]
    out = randomness.threefry2x32(key, counter)
    assert [int(_numpy(w)[0]) & 0xFFFFFFFF for w in out] == list(expected)


def test_a_large_draw_gives_the_bits_of_threefry_itself(backend):
    """More counters than PyTorch's kernel takes at once (it runs them in parts): the same bits as the one
    keras.ops Threefry, and as a small draw gives its first rows."""
    import keras

    counter = [keras.ops.convert_to_tensor(np.arange(w, w + 70_000, dtype=np.int32).reshape(2, -1)) for w in (0, 11)]
    key = [keras.ops.convert_to_tensor(np.int32(w)) for w in (123, -5)]
    fast = [_numpy(w) for w in randomness._kernel()(*key, *counter)]
    reference = [_numpy(w) for w in randomness.threefry2x32(key, counter)]
    for a, b in zip(fast, reference):
        np.testing.assert_array_equal(a, b)
    bits = _numpy(randomness.random_bits((3, 100_000), 9))
    np.testing.assert_array_equal(bits[:2], _numpy(randomness.random_bits((2, 100_000), 9)))


def _draw_layer_class(names):
    import keras

    class Draws(keras.layers.Layer):
        """Dropout (whole and per row), normal and randint drawn at each call, in inference too, from one
        SeedGenerator (torch.compile takes seconds per draw on a CPU: the rest share their code)."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.generator = keras.random.SeedGenerator(7)

        def call(self, x):
            g = self.generator
            rows = keras.ops.shape(x)[0]
            draws = {
                "dropout": lambda: keras.random.dropout(x, 0.5, seed=g),
                "spatial": lambda: keras.random.dropout(x, 0.5, noise_shape=(rows, 1), seed=g),
                "normal": lambda: keras.random.normal((3, 5), seed=g),
                "randint": lambda: keras.random.randint((3, 5), 0, 10, seed=g),
            }
            return {name: draws[name]() for name in names}

    return Draws


#: The draws compiled against eager. On PyTorch, Inductor took 256 s (CI, 2 idle cores) to compile all four
#: for a CPU; the dropout and the normal alone are compiled there (the others are the same Threefry code, drawn in
#: the other tests).
COMPILED_DRAWS = {"torch": ("dropout", "normal")}


def _predictions(names, **compile_args) -> list[dict]:
    import keras

    inputs = keras.Input((6,))
    model = keras.Model(inputs, _draw_layer_class(names)()(inputs))
    model.compile(**compile_args)
    x = np.ones((4, 6), dtype="float32")
    with randomness.portable():
        return [model.predict(x, batch_size=4, verbose=0) for _ in range(2)]


def test_compiled_draws_equal_eager_draws_and_the_state_advances(backend):
    names = COMPILED_DRAWS.get(backend, ("dropout", "spatial", "normal", "randint"))
    eager = _predictions(names, run_eagerly=True)
    compiled = _predictions(names, jit_compile=True)
    for name in eager[0]:
        for e, c in zip(eager, compiled):
            np.testing.assert_allclose(c[name], e[name], rtol=1e-6, atol=1e-6, err_msg=name)
    # The SeedGenerator advanced between the two calls: the second draws other numbers.
    assert not np.array_equal(eager[0]["normal"], eager[1]["normal"])


def test_a_generators_draws_go_in_one_torch_graph_and_advance_it_as_eagerly(backend):
    """A SeedGenerator's draw inside ``torch.compile(fullgraph=True)``, as the whole compiled train step
    (``TrainStep(jit_compile=True)``) has it: Keras's own ``SeedGenerator.next`` builds its step with NumPy,
    which broke that graph. Dynamo's ``eager`` backend traces without Inductor's minutes of compiling."""
    if backend != "torch":
        pytest.skip("fullgraph is torch.compile's; XLA traces a generator's draws in every test above")
    import keras
    import torch

    x = keras.ops.ones((4, 6))

    def draws(draw):
        generator = keras.random.SeedGenerator(7)
        with randomness.portable():
            return [_numpy(draw(x, generator)) for _ in range(2)] + [_numpy(generator.state.value)]

    def dropout(x, generator):
        return keras.random.dropout(x, 0.5, seed=generator)

    compiled = draws(torch.compile(dropout, fullgraph=True, backend="eager"))
    for eager, traced in zip(draws(dropout), compiled):
        np.testing.assert_array_equal(traced, eager)
    assert compiled[2].tolist() == [7, 2]  # advanced once per draw


def test_draws_follow_their_distribution(backend):
    import keras

    n = 20_000
    with randomness.portable():
        u = _numpy(keras.random.uniform((n,), minval=2.0, maxval=4.0, seed=1))
        z = _numpy(keras.random.normal((n,), mean=1.0, stddev=2.0, seed=2))
        t = _numpy(keras.random.truncated_normal((n,), seed=3))
        i = _numpy(keras.random.randint((n,), 3, 7, seed=4))
        d = _numpy(keras.random.dropout(np.ones((n,), "float32"), 0.25, seed=5))
        s = _numpy(keras.random.shuffle(np.arange(100), seed=6))
        c = _numpy(keras.random.categorical(np.log(np.array([[0.7, 0.3, 0.0]], "float32")), n, seed=7))
    assert 2.0 <= u.min() and u.max() < 4.0 and abs(u.mean() - 3.0) < 0.02
    assert abs(z.mean() - 1.0) < 0.05 and abs(z.std() - 2.0) < 0.05
    assert np.abs(t).max() <= 2.0 and abs(t.std() - 0.88) < 0.02  # a unit normal cut at two: 0.8796
    assert set(np.unique(i)) == {3, 4, 5, 6}
    assert set(np.unique(d)) == {0.0, np.float32(1 / 0.75)} and abs((d == 0).mean() - 0.25) < 0.01
    assert sorted(s) == list(range(100)) and not np.array_equal(s, np.arange(100))
    assert set(np.unique(c)) == {0, 1} and abs((c == 0).mean() - 0.7) < 0.01


def test_a_samples_mask_does_not_depend_on_how_the_batch_is_split(backend):
    import keras

    x = np.ones((8, 5), "float32")
    with randomness.portable(offset=0):
        whole = _numpy(keras.random.dropout(x, 0.5, seed=3))
        first = _numpy(keras.random.dropout(x[:4], 0.5, seed=3))
    with randomness.portable(offset=4):
        second = _numpy(keras.random.dropout(x[4:], 0.5, seed=3))
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)


def test_backend_mode_keeps_kerass_functions_and_portable_gives_them_back(backend):
    from keras.src import backend as keras_backend

    own = {name: getattr(keras_backend.random, name) for name in randomness.NAMES}
    with randomness.use("backend"):
        assert {name: getattr(keras_backend.random, name) for name in randomness.NAMES} == own
    with randomness.use("portable"):
        assert keras_backend.random.dropout is randomness.dropout
        with randomness.portable(offset=2):  # nested: the outer one comes back
            assert randomness._offset == 2
        assert keras_backend.random.normal is randomness.normal
    assert {name: getattr(keras_backend.random, name) for name in randomness.NAMES} == own


def test_unseeded_generators_start_from_the_run_seed_alone_and_a_users_seed_is_kept(backend):
    """Keras seeds an unseeded generator from Python's ``random``: whatever drew from it before (a user's
    factory, another model built first) would change the stream; the run's seed and the layer's place do not."""
    import random

    import keras

    from backendlab.specs import load_callable

    dense_dropout = load_callable("tests/fixtures/random_models.py:dense_dropout", "model")

    def states(python_seed: int, run_seed: int = 0) -> list[list[int]]:
        random.seed(python_seed)
        model = dense_dropout()
        randomness.portable_seed_states(model, run_seed)
        return [
            _numpy(layer.seed_generator.state).tolist() for layer in model.layers if layer.name.startswith("dropout")
        ]

    first = states(1)
    assert first[0] == [42, 0]  # Dropout(seed=42): the user's seed, as Keras made it
    assert states(2) == first
    assert states(1, run_seed=1)[1] != first[1]
    assert keras.random.SeedGenerator(5).state is not None  # a fresh generator elsewhere is untouched


def test_a_shuffle_of_a_length_tensorflows_graph_leaves_unknown_is_the_eager_shuffle(backend):
    """Keras's MixUp shuffles the batch; in ``evaluate`` TensorFlow traces it with a batch of None."""
    if backend != "tensorflow":
        pytest.skip("only TensorFlow's graphs leave a length unknown; JAX and PyTorch trace it as a number")
    import keras
    import tensorflow as tf

    def shuffled(x):
        with randomness.portable():
            return keras.random.shuffle(x, seed=3)

    graph = tf.function(shuffled, input_signature=[tf.TensorSpec((None,), tf.int64)])
    for n in (1, 2, 5, 33):
        x = np.arange(n, dtype="int64")
        eager, traced = _numpy(shuffled(keras.ops.convert_to_tensor(x))), _numpy(graph(x))
        np.testing.assert_array_equal(traced, eager)
        assert sorted(traced.tolist()) == x.tolist()
