"""PyTorch's compiled training step: the whole step in one ``torch.compile`` graph, with no graph break,
training as eager Keras does.

``TrainStep(jit_compile=True)`` and ``fit`` inside ``whole_step_fit`` on a tiny model with an L2
regularizer, sample weights and a metric: Dynamo's own counters must show one graph and no break,
and the losses, metrics and weights after a few steps must be eager Keras's within float rounding.
Each compile takes tens of seconds on a small CPU, so the model is tiny and each path compiles once.
"""

from __future__ import annotations

import numpy as np
import pytest

STEPS, BATCH = 4, 16
ROUNDING = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(autouse=True)
def torch_only(backend):
    if backend != "torch":
        pytest.skip("torch.compile's graph is PyTorch's; JAX and TensorFlow compile the whole step already")


def tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-2)),
            keras.layers.Dense(3),
        ]
    )


def data():
    rng = np.random.default_rng(0)
    n = STEPS * BATCH
    return (
        rng.normal(size=(n, 8)).astype("float32"),
        rng.integers(0, 3, n),
        rng.uniform(0.5, 1.5, n).astype("float32"),
    )


def weights(model) -> list:
    return [np.asarray(v.numpy()) for v in model.weights]


def compiled(fn):
    """Whatever ``fn()`` returns, and Dynamo's count of the graphs it compiled and the breaks in them."""
    from torch._dynamo.utils import counters

    counters.clear()
    out = fn()
    return out, counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def test_trainstep_compiles_the_whole_step_as_one_graph_and_trains_as_eager():
    import keras

    from backendlab import TrainStep

    x, y, w = data()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train(jit_compile):
        model = tiny_model()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        step = TrainStep(model, loss, keras.optimizers.Adam(1e-2), metrics=metrics, jit_compile=jit_compile)
        logs = [step(x[i : i + BATCH], y[i : i + BATCH], w[i : i + BATCH]) for i in range(0, len(x), BATCH)]
        return logs, weights(model), float(keras.ops.convert_to_numpy(keras.ops.stop_gradient(sum(model.losses))))

    (logs, trained, penalty), graphs, breaks = compiled(lambda: train(True))
    assert (graphs, breaks) == (1, 0)
    eager_logs, eager_trained, _ = train(None)
    assert penalty > 1e-3  # the regularizer weighs in on the loss, in the graph as eagerly
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose([s[key] for s in logs], [s[key] for s in eager_logs], **ROUNDING)
    for a, b in zip(trained, eager_trained):
        np.testing.assert_allclose(a, b, **ROUNDING)


def test_fit_in_whole_step_fit_is_one_graph_trains_as_eager_fit_and_leaves_the_model_as_it_was():
    import keras

    from backendlab import whole_step_fit

    x, y, w = data()

    def fit(whole: bool):
        model = tiny_model()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=whole,
        )
        kwargs = {"sample_weight": w, "batch_size": BATCH, "epochs": 2, "shuffle": False, "verbose": 0}
        if not whole:
            return model.fit(x, y, **kwargs).history, weights(model), model
        with whole_step_fit(model):
            history = model.fit(x, y, **kwargs).history
        return history, weights(model), model

    (history, trained, model), graphs, breaks = compiled(lambda: fit(True))
    assert (graphs, breaks) == (1, 0)
    # Taken off on leaving: the next fit makes Keras's own train function.
    assert "make_train_function" not in model.__dict__ and model.train_function is None
    eager_history, eager_trained, _ = fit(False)
    assert history.keys() == eager_history.keys() == {"loss", "accuracy"}
    for key in history:
        np.testing.assert_allclose(history[key], eager_history[key], **ROUNDING)
    for a, b in zip(trained, eager_trained):
        np.testing.assert_allclose(a, b, **ROUNDING)


def test_binary_cross_entropy_on_a_sigmoid_compiles_in_one_graph_and_trains_as_eager():
    """The seed's loss: Keras's torch binary_crossentropy asks torch.backends.mps.is_available() on every
    call, which Dynamo cannot put in a graph (``torch.* op returned non-Tensor``): every whole step failed."""
    import keras

    from backendlab import TrainStep

    x, y, _ = data()
    y = (y == 0).astype("float32")[:, None]

    def train(jit_compile):
        keras.utils.set_random_seed(0)
        dense = keras.layers.Dense
        model = keras.Sequential([keras.Input((8,)), dense(4, activation="relu"), dense(1, activation="sigmoid")])
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)
        step = TrainStep(model, keras.losses.BinaryCrossentropy(), optimizer, jit_compile=jit_compile)
        return [step(x[i : i + BATCH], y[i : i + BATCH])["loss"] for i in range(0, len(x), BATCH)], weights(model)

    (losses, trained), graphs, breaks = compiled(lambda: train(True))
    assert (graphs, breaks) == (1, 0)
    eager_losses, eager_trained = train(None)
    np.testing.assert_allclose(losses, eager_losses, **ROUNDING)
    for a, b in zip(trained, eager_trained):
        np.testing.assert_allclose(a, b, **ROUNDING)


def test_fit_with_binary_cross_entropy_in_whole_step_fit_is_one_graph():
    import keras

    from backendlab import whole_step_fit

    x, y, _ = data()
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense
    model = keras.Sequential([keras.Input((8,)), dense(4, activation="relu"), dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy", jit_compile=True)

    def fit():
        with whole_step_fit(model):
            return model.fit(x, (y == 0).astype("float32"), batch_size=BATCH, shuffle=False, verbose=0).history

    history, graphs, breaks = compiled(fit)
    assert (graphs, breaks) == (1, 0) and np.isfinite(history["loss"]).all()
