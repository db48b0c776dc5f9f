"""The seed's custom training loop, written once, run with each backend's own autodiff."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run

from backendlab.errors import UsageError
from backendlab.training import prepare, train

RTOL = 1e-5


def _weights(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


def _assert_weights_close(a, b, tol=RTOL):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


@pytest.mark.parametrize("model, optimizer, epochs", [("mlp", "sgd", 4), ("cnn", "adam", 2)])
def test_custom_loop_matches_fit_step_by_step(model, optimizer, epochs):
    fit = prepare(model, epochs=epochs, optimizer=optimizer, loop="fit")
    custom = prepare(model, epochs=epochs, optimizer=optimizer, loop="custom")
    _assert_weights_close(_weights(fit.model), _weights(custom.model), tol=0)  # same starting weights
    a, b = train(fit), train(custom)
    assert len(a.step_running_loss) == len(b.step_running_loss) > 0
    np.testing.assert_allclose(b.step_running_loss, a.step_running_loss, rtol=RTOL)
    assert set(b.history) == set(a.history) == {"loss", "accuracy"}
    for key in a.history:
        np.testing.assert_allclose(b.history[key], a.history[key], rtol=RTOL)
    _assert_weights_close(_weights(fit.model), _weights(custom.model))
    # evaluate sees the custom loop's weights
    assert b.test["loss"] == pytest.approx(a.test["loss"], rel=1e-4)


def test_user_loss_written_with_keras_ops_matches_keras_kl_divergence():
    import keras
    from keras import ops

    from backendlab import TrainStep

    def kl_divergence(y_true, y_pred):  # as in the seed, with keras.ops only
        y_true = ops.clip(y_true, 1e-7, 1.0)
        y_pred = ops.clip(y_pred, 1e-7, 1.0)
        return ops.sum(y_true * ops.log(y_true / y_pred), axis=-1)

    mine, theirs = prepare("mlp", "digits"), prepare("mlp", "digits")
    y = keras.utils.to_categorical(mine.data.y_train, 10)
    step_mine = TrainStep(mine.model, kl_divergence, keras.optimizers.Adam(1e-2))
    step_theirs = TrainStep(theirs.model, keras.losses.KLDivergence(), keras.optimizers.Adam(1e-2))
    losses = []
    for start in range(0, 640, 32):
        x_batch, y_batch = mine.data.x_train[start : start + 32], y[start : start + 32]
        losses.append((step_mine(x_batch, y_batch)["loss"], step_theirs(x_batch, y_batch)["loss"]))
    losses = np.array(losses)
    np.testing.assert_allclose(losses[:, 0], losses[:, 1], rtol=RTOL)
    assert losses[-3:, 0].mean() < 0.7 * losses[:3, 0].mean()  # and it learns


def test_train_step_returns_batch_metrics():
    import keras

    from backendlab import TrainStep

    prep = prepare("mlp")
    step = TrainStep(prep.model, "binary_crossentropy", keras.optimizers.SGD(0.01), metrics=["binary_accuracy"])
    logs = step(prep.data.x_train[:64], prep.data.y_train[:64])
    assert set(logs) == {"loss", "binary_accuracy"}
    assert 0.0 <= logs["binary_accuracy"] <= 1.0 and logs["loss"] > 0


def test_resume_after_save_and_load_matches_uninterrupted_training(tmp_path):
    import keras

    whole = prepare("mlp", epochs=4, loop="custom")
    whole_result = train(whole)

    first = prepare("mlp", epochs=2, loop="custom")
    train(first)
    first.model.save(tmp_path / "half.keras")
    rest = prepare("mlp", epochs=2, loop="custom", resume=tmp_path / "half.keras")
    assert rest.config.initial_epoch == 2
    rest_result = train(rest)
    np.testing.assert_allclose(rest_result.history["loss"], whole_result.history["loss"][2:], rtol=RTOL)
    _assert_weights_close(_weights(rest.model), _weights(whole.model))

    # The control: the same weights with a fresh optimizer (momentum lost) end elsewhere,
    # so the agreement above is the optimizer state surviving save and load.
    fresh = prepare("mlp", epochs=2, loop="custom")
    fresh.model.set_weights(_weights(keras.saving.load_model(tmp_path / "half.keras")))
    fresh.config.initial_epoch = 2
    fresh_result = train(fresh)
    assert abs(fresh_result.history["loss"][0] - whole_result.history["loss"][2]) > 1e-4


def test_loss_that_is_not_callable():
    import keras

    from backendlab import TrainStep

    with pytest.raises(UsageError) as err:
        TrainStep(prepare("mlp").model, 42, keras.optimizers.Adam())
    assert str(err.value) == "loss must be callable (y_true, y_pred) -> loss, got int"


def test_model_never_built():
    import keras

    from backendlab import TrainStep
    from backendlab.specs import load_callable

    model = load_callable("tests/fixtures/user_models.py:subclassed", "model")()
    with pytest.raises(UsageError) as err:
        TrainStep(model, "mse", keras.optimizers.Adam())
    assert model.name.startswith("subclassed")  # Keras numbers a second one built in this process
    assert str(err.value) == (
        f"model {model.name!r} has no weights yet: build it first (give it a keras.Input, "
        "call model.build(input_shape), or call it once on a batch)"
    )


def test_batch_of_the_wrong_shape():
    import keras

    from backendlab import TrainStep

    prep = prepare("mlp")
    step = TrainStep(prep.model, "binary_crossentropy", keras.optimizers.Adam())
    with pytest.raises(UsageError) as err:
        step(np.zeros((8, 5), "float32"), np.zeros(8, "float32"))
    assert str(err.value).startswith("model 'mlp' failed on a batch of shape (8, 5) -> (8,): ")


def test_readme_custom_loop_example_runs(backend):
    import re
    import sys

    proc = run([sys.executable, "examples/custom_loop.py"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "after reload: optimizer step 46," in proc.stdout  # 3 epochs of 15 steps, then one more
    accuracy = float(re.search(rf"{backend}: test accuracy ([0-9.]+)", proc.stdout).group(1))
    assert accuracy > 0.9


def test_run_batches_trains_as_one_call_per_batch_and_leaves_the_weights_in_keras(backend):
    """The fast path (no read-back per step; on JAX the state carried in arrays) changes nothing but speed."""
    import keras

    from backendlab import TrainStep

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype("float32")
    y = rng.integers(0, 3, size=96)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)]

    def fresh():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return model, TrainStep(model, loss, keras.optimizers.Adam(1e-2))

    one, step = fresh()
    per_batch = [step(xb, yb)["loss"] for xb, yb in batches]
    many, fast = fresh()
    losses = fast.run_batches(batches)
    np.testing.assert_allclose([float(keras.ops.convert_to_numpy(v)) for v in losses], per_batch, rtol=1e-6)
    _assert_weights_close(_weights(many), _weights(one), tol=1e-6)
    assert int(keras.ops.convert_to_numpy(fast.optimizer.iterations)) == 3  # optimizer state went back too
    # and the model predicts with them
    np.testing.assert_allclose(many.predict(x, verbose=0), one.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_train_step_compiled_or_not_trains_as_the_default(backend, jit_compile):
    """jit_compile=True: XLA on TensorFlow, torch.compile on PyTorch; False: JAX op by op."""
    import keras

    from backendlab import TrainStep

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 5)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    results = []
    for jit in (None, jit_compile):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
        step = TrainStep(model, "mse", keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=jit)
        results.append(([step(x[i : i + 16], y[i : i + 16])["loss"] for i in range(0, 64, 16)], _weights(model)))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    _assert_weights_close(results[1][1], results[0][1], tol=1e-5)


def test_train_step_trains_a_subclassed_model_whose_call_takes_no_training_flag(backend):
    """Keras's fit leaves ``training`` out for such a model; so must TrainStep (JAX's stateless_call passes it on)."""
    import keras

    from backendlab import TrainStep

    class Plain(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)

        def call(self, x):  # no `training` argument
            return self.out(self.hidden(x))

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, size=32)
    model = Plain()
    model(x[:1])
    step = TrainStep(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), "sgd")
    first = step(x, y)["loss"]
    for _ in range(20):
        last = step(x, y)["loss"]
    assert np.isfinite(first) and last < first


def test_a_model_compiled_with_the_users_own_functions_resumes_with_them(tmp_path):
    """A focal loss and a metric that are plain functions of the model file, not registered with Keras: the
    saved file names them only, and resuming it finds them in the file the run names."""
    from backendlab.training import save_model, trained_spec

    model = "tests/fixtures/custom_functions.py:focal_mlp"
    first = prepare(model, epochs=1)
    first_result = train(first)
    path = save_model(first.model, tmp_path / "focal.keras", trained_spec(first))
    rest = prepare(model, epochs=1, resume=path)
    assert rest.model.loss.__name__ == "focal_loss" and rest.config.initial_epoch == 1
    result = train(rest)
    assert {"loss", "hit_rate"} <= set(result.history)
    assert result.history["loss"][0] < first_result.history["loss"][0]  # it went on from the saved state
