"""Portable starting weights: the same seed gives the same start on every backend (backendlab.init).

In-process tests run on the active backend and assert facts about the values; the `cross` test
runs every backend in its own process and asserts that they print the same checksums.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import FIXTURES, ZOO

from backendlab.data import load_dataset
from backendlab.errors import UsageError
from backendlab.init import PortableStart, draw, portable_init, weights_checksum
from backendlab.models import build_model, default_data

sys.path.insert(0, str(FIXTURES))

from portable_models import BUILDERS  # noqa: E402


def zoo(name: str):
    return build_model(name, load_dataset(default_data(name), 0))


def built(*layers, shape):
    return keras.Sequential([keras.Input(shape), *layers])


def values(model, path: str) -> np.ndarray:
    return next(np.asarray(v.numpy()) for v in model.weights if v.path.endswith(path))


def portable_init_and_return(model, seed: int = 0):
    portable_init(model, seed)
    return model


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_start_depends_on_the_seed_alone(name):
    first = portable_init(zoo(name), seed=0)
    again = portable_init(zoo(name), seed=0)  # a fresh build: Keras numbers its layers differently now
    other = portable_init(zoo(name), seed=1)
    assert first.checksum == again.checksum
    assert other.checksum != first.checksum
    assert first.fallback == [] and first.note is None
    assert len(first.portable) == len(zoo(name).weights)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_models_beyond_the_zoo_are_covered_portably(name):
    first = portable_init(BUILDERS[name](), seed=3)
    assert first.fallback == [], first.note
    assert portable_init(BUILDERS[name](), seed=3).checksum == first.checksum


def test_checksum_covers_every_weight_in_model_order():
    model = zoo("mlp")
    start = portable_init(model, seed=0)
    assert start.checksum == weights_checksum(v.numpy() for v in model.weights)
    assert len(start.checksum) == 16


def test_adding_a_layer_does_not_shift_the_others():
    small = built(keras.layers.Dense(8), keras.layers.Dense(4, name="head"), shape=(6,))
    large = built(keras.layers.Dense(8), keras.layers.Dense(4, name="head"), keras.layers.Dense(2), shape=(6,))
    portable_init(small, seed=0)
    portable_init(large, seed=0)
    for a, b in zip(small.weights, large.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_glorot_uniform_kernel_fills_its_limit_with_uniform_variance():
    kernel = values(portable_init_and_return(built(keras.layers.Dense(512), shape=(512,))), "kernel")
    limit = math.sqrt(6 / (512 + 512))
    assert kernel.min() >= -limit and kernel.max() <= limit
    assert kernel.max() > 0.999 * limit and kernel.min() < -0.999 * limit
    assert kernel.var() == pytest.approx(limit**2 / 3, rel=0.02)
    assert abs(kernel.mean()) < 0.01 * limit


def test_truncated_normal_stays_within_two_stddev_and_keeps_the_variance_asked_for():
    kernel = values(
        portable_init_and_return(built(keras.layers.Dense(512, kernel_initializer="he_normal"), shape=(256,))), "kernel"
    )
    target = math.sqrt(2 / 256)  # he_normal's stddev after truncation
    drawn_with = target / 0.87962566103423978
    assert np.abs(kernel).max() <= 2 * drawn_with + 1e-7
    assert np.abs(kernel).max() > 1.99 * drawn_with
    assert kernel.std() == pytest.approx(target, rel=0.02)


def test_orthogonal_kernels_are_orthogonal_with_their_gain():
    model = built(keras.layers.Dense(32, kernel_initializer=keras.initializers.Orthogonal(gain=2.0)), shape=(64,))
    kernel = values(portable_init_and_return(model), "kernel")
    np.testing.assert_allclose(kernel.T @ kernel, 4 * np.eye(32), atol=1e-5)
    recurrent = values(portable_init_and_return(BUILDERS["embedding_gru"]()), "recurrent_kernel")  # (12, 36): rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(12), atol=1e-5)


def test_batchnorm_starts_from_unit_variance_and_zero_mean():
    model = portable_init_and_return(BUILDERS["batchnorm_regularized"]())
    np.testing.assert_array_equal(values(model, "moving_variance"), np.ones(8))
    np.testing.assert_array_equal(values(model, "moving_mean"), np.zeros(8))
    np.testing.assert_array_equal(values(model, "gamma"), np.ones(8))


def test_lstm_unit_forget_bias_opens_the_forget_gate():
    bias = values(portable_init_and_return(zoo("rnn")), "lstm_cell/bias")
    units = bias.size // 4
    np.testing.assert_array_equal(bias, np.r_[np.zeros(units), np.ones(units), np.zeros(2 * units)])


RANDOM_INITIALIZERS = [
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    ("VarianceScaling", {"scale": 0.5, "mode": "fan_out", "distribution": "untruncated_normal"}),
    ("VarianceScaling", {"scale": 3.0, "mode": "fan_avg", "distribution": "truncated_normal"}),
    ("RandomNormal", {"mean": 0.1, "stddev": 0.3}),
    ("RandomUniform", {"minval": -0.2, "maxval": 0.5}),
    ("TruncatedNormal", {"mean": 0.1, "stddev": 0.3}),
    ("Orthogonal", {"gain": 1.5}),
]


def _spec_id(spec) -> str:
    return spec if isinstance(spec, str) else "-".join([spec[0], *map(str, spec[1].values())])


@pytest.mark.parametrize("spec", RANDOM_INITIALIZERS, ids=_spec_id)
def test_portable_draws_follow_the_distribution_of_keras_own(spec):
    init = keras.initializers.get(spec if isinstance(spec, str) else {"class_name": spec[0], "config": spec[1]})
    shape = (3, 3, 64, 128)  # a conv kernel: the fans count its receptive field
    ours = draw(init, shape, np.random.default_rng(0))
    theirs = keras.ops.convert_to_numpy(init(shape, dtype="float32")).astype(np.float64)
    scale = theirs.std()
    assert ours.std() == pytest.approx(scale, rel=0.03)
    for q in (0.01, 0.25, 0.5, 0.75, 0.99):  # tell uniform, normal and truncated normal apart
        assert np.quantile(ours, q) == pytest.approx(np.quantile(theirs, q), abs=0.1 * scale), q


DETERMINISTIC = [
    ("zeros", (4, 3)),
    ("ones", (5,)),
    ({"class_name": "Constant", "config": {"value": 0.7}}, (2, 3)),
    ({"class_name": "Identity", "config": {"gain": 2.0}}, (5, 7)),
    ({"class_name": "STFT", "config": {"side": "imag", "window": "hann", "scaling": "density"}}, (16, 1, 9)),
    ({"class_name": "STFT", "config": {"side": "real", "window": None, "scaling": None}}, (8, 1, 5)),
]


@pytest.mark.parametrize("spec, shape", DETERMINISTIC, ids=lambda s: str(s)[:40])
def test_deterministic_initializers_equal_keras_values(spec, shape):
    init = keras.initializers.get(spec)
    theirs = keras.ops.convert_to_numpy(init(shape, dtype="float32"))
    np.testing.assert_allclose(draw(init, shape, np.random.default_rng(0)), theirs, atol=1e-6)


class OnesPlusHalf(keras.initializers.Initializer):
    def __call__(self, shape, dtype=None):
        return keras.ops.ones(shape, dtype=dtype) * 1.5


def test_custom_initializer_keeps_its_value_and_is_named_in_one_line():
    model = built(keras.layers.Dense(3, kernel_initializer=OnesPlusHalf(), name="custom"), shape=(4,))
    start = portable_init(model, seed=0)
    kernel = model.weights[0]
    assert start.fallback == [kernel.path]
    assert start.portable == [model.weights[1].path]
    assert start.note == f"1 variable keeps its backend's own initializer (not reproducible portably): {kernel.path}"
    np.testing.assert_array_equal(kernel.numpy(), np.full((4, 3), 1.5))


def test_initializer_functions_and_lambdas_fall_back_too():
    def halves(shape, dtype=None):
        return keras.ops.full(shape, 0.5, dtype=dtype)

    model = built(
        keras.layers.Dense(3, kernel_initializer=halves),
        keras.layers.Dense(2, bias_initializer=lambda shape, dtype=None: keras.ops.ones(shape, dtype=dtype)),
        shape=(4,),
    )
    start = portable_init(model, seed=0)
    assert start.fallback == [model.weights[0].path, model.weights[3].path]
    assert start.note.startswith("2 variables keep their backend's own initializer (not reproducible portably): ")


class Gated(keras.layers.Layer):
    """Takes a function in __init__, so its config cannot be rebuilt: its weight cannot be explained."""

    def __init__(self, gate, **kwargs):
        super().__init__(**kwargs)
        self.gate = gate

    def build(self, input_shape):
        self.g = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="g")

    def call(self, x):
        return self.gate(x) * self.g


def test_a_layer_that_cannot_be_rebuilt_falls_back_and_its_siblings_do_not():
    model = built(keras.layers.Dense(4), Gated(keras.ops.relu, name="gated"), shape=(3,))
    start = portable_init(model, seed=0)
    assert start.fallback == [model.weights[2].path]
    assert start.fallback[0].endswith("gated/g")
    assert len(start.portable) == 2


class Wrapper(keras.Model):
    """A subclassed model holding a layer object it was given: replayed sublayer by sublayer."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.head = keras.layers.Dense(2, kernel_initializer="lecun_uniform")

    def call(self, x):
        return self.head(self.inner(x))


def test_subclassed_models_with_lazily_built_custom_layers_are_portable():
    model = BUILDERS["subclassed"]()
    start = portable_init(model, seed=0)
    assert start.fallback == []
    assert model.scale.w.path in start.portable  # add_weight(initializer="he_normal") in the layer's build()
    w = np.asarray(model.scale.w.numpy())
    assert np.abs(w).max() <= 2 * math.sqrt(2 / 12) / 0.87962566103423978 + 1e-7


def test_model_whose_config_does_not_round_trip_is_explained_layer_by_layer():
    from portable_models import Scale

    model = Wrapper(Scale(5))
    model(np.zeros((2, 4), dtype="float32"))
    start = portable_init(model, seed=0)
    assert start.fallback == [] and len(start.portable) == 3


class Offsets(keras.layers.Layer):
    """Starts its weight from an array given in build(): Keras wraps it in a function of its own."""

    def build(self, input_shape):
        self.offset = self.add_weight(shape=(3,), initializer=np.array([1.0, 2.0, 3.0]), name="offset")

    def call(self, x):
        return x + self.offset


def test_an_array_given_to_add_weight_is_portable_as_itself():
    model = built(Offsets(), keras.layers.BatchNormalization(renorm=True), shape=(3,))
    start = portable_init(model, seed=0)
    assert start.fallback == []
    np.testing.assert_array_equal(values(model, "offset"), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(values(model, "moving_stddev"), np.ones(3))  # renorm: sqrt of the variance's ones


def test_leaves_python_random_and_keras_layer_numbering_as_they_were():
    from keras.src.backend.common import global_state

    model = zoo("transformer")
    state, counters = random.getstate(), dict(global_state.get_global_attribute("object_name_uids"))
    portable_init(model, seed=0)
    assert random.getstate() == state
    assert dict(global_state.get_global_attribute("object_name_uids")) == counters
    assert not global_state.get_global_attribute("uninitialized_variables")


def test_an_unbuilt_model_is_refused_in_one_line():
    with pytest.raises(UsageError, match="portable_init needs a built model"):
        portable_init(keras.Sequential([keras.layers.Dense(2)]), seed=0)


def test_note_names_the_first_variables_and_counts_the_rest():
    start = PortableStart("0" * 16, [], [f"layer_{i}/w" for i in range(10)])
    assert start.note == (
        "10 variables keep their backend's own initializer (not reproducible portably): "
        "layer_0/w, layer_1/w, layer_2/w, layer_3/w, layer_4/w, layer_5/w, layer_6/w, layer_7/w and 2 more"
    )


def test_import_pulls_in_no_framework_and_exports_portable_init_lazily():
    code = (
        "import sys, backendlab, backendlab.init\n"
        "print([m for m in ('keras', 'jax', 'tensorflow', 'torch') if m in sys.modules])\n"
        "print(backendlab.portable_init is backendlab.init.portable_init)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stderr


def test_an_unnamed_weight_of_a_custom_layer_is_covered():
    """``add_weight`` without a name is ``variable`` in the layer and ``variable_1`` in the replayed twin."""
    import keras

    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal")

        def call(self, x):
            return x * self.w

    def build():
        model = keras.Sequential([keras.Input((3,)), Scale()])
        model(np.zeros((1, 3), "float32"))
        return model

    first = portable_init(build(), seed=2)
    assert first.fallback == [] and first.note is None
    assert portable_init(build(), seed=2).checksum == first.checksum


# --- What a model's factory sets after building is kept ---------------------------------------------------------

ADAPTED = f"{FIXTURES / 'adapted_models.py'}"


def test_a_portable_start_keeps_what_the_factory_adapted_and_loaded():
    """Through prepare(), as train and compare start: what the factory adapted and set survives, others are drawn."""
    import adapted_models

    from backendlab.training.preparation import prepare

    prep = prepare(f"{ADAPTED}:build", f"{ADAPTED}:data", seed=0)
    start, model = prep.start, prep.model
    assert [p.split("/")[-2:] for p in start.kept] == [
        ["norm", "mean"],
        ["norm", "variance"],
        ["pretrained", "kernel"],
        ["pretrained", "bias"],
    ]
    assert [p.split("/")[-2:] for p in start.portable] == [
        ["norm", "count"],
        ["hidden", "kernel"],
        ["hidden", "bias"],
        ["out", "kernel"],
        ["out", "bias"],
    ]
    assert start.fallback == [] and start.note is None
    (x, _), _ = adapted_models.data()
    norm = model.get_layer("norm")
    np.testing.assert_allclose(norm.adapt_mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.adapt_variance.numpy(), x.var(0), rtol=1e-4)
    pretrained = model.get_layer("pretrained")
    np.testing.assert_array_equal(pretrained.kernel.numpy(), adapted_models.pretrained_kernel())
    # The bias the factory drew from NumPy's global generator, seeded by the run's seed as for any build.
    bias = np.random.RandomState(0).normal(0.0, 0.1, 6).astype("float32")
    np.testing.assert_array_equal(pretrained.bias.numpy(), bias)
    # The random ones are what a start without the rebuild draws: from the seed, not the backend.
    keras.utils.set_random_seed(0)
    plain = adapted_models.build()
    portable_init(plain, seed=0)
    np.testing.assert_array_equal(model.get_layer("hidden").kernel.numpy(), plain.get_layer("hidden").kernel.numpy())


def test_initializers_that_draw_nothing_at_random_are_not_redrawn_by_chance():
    """A seeded initializer is still drawn portably; a user's deterministic one is kept, not a fallback."""
    from adapted_models import seeded_and_constant

    model = seeded_and_constant()
    start = portable_init(model, seed=0, rebuild=seeded_and_constant)
    kernel, bias = model.weights
    assert (start.portable, start.kept, start.fallback) == ([kernel.path], [bias.path], [])
    np.testing.assert_array_equal(bias.numpy(), np.full(3, 0.5))
    plain = seeded_and_constant()
    again = portable_init(plain, seed=0)  # without the rebuild, nothing tells the user's constant from a draw
    assert again.fallback == [plain.weights[1].path]
    np.testing.assert_array_equal(kernel.numpy(), plain.weights[0].numpy())


def test_the_rebuild_leaves_keras_and_numpy_global_state_as_it_was():
    from adapted_models import build
    from keras.src.backend.common import global_state

    keras.utils.set_random_seed(3)
    model = build()
    state, numpy_state = random.getstate(), np.random.get_state()
    counters = dict(global_state.get_global_attribute("object_name_uids"))
    portable_init(model, seed=0, rebuild=build)
    assert random.getstate() == state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))
    assert dict(global_state.get_global_attribute("object_name_uids")) == counters
