"""Sample weights: a data function's ``(x, y, w)`` arrays and a pipeline's ``(x, y, w)`` batches train, on
this backend, as Keras's own ``fit(x, y, sample_weight=w)`` trains on them, with fit and with the custom
loop; evaluation weighs the test split's samples."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES

from backendlab.errors import UsageError
from backendlab.runspec import RunSpec
from backendlab.specs import load_callable
from backendlab.training import check_padding, epoch_orders, prepare, train

EXACT = 1e-5  # float32 rounding: the same operations, in another order at most
BATCH = 16


def weighted(name: str) -> str:
    return f"{FIXTURES / 'weighted_data.py'}:{name}"


def _reference(prep, start, epochs_of_batches):
    """Keras's own fit on the model's clone from the same start, given ``sample_weight`` as fit takes it:
    each epoch's (x, y, w) keywords from ``epochs_of_batches``. Returns (epoch losses, weights, test)."""
    import keras

    data, config = prep.data, prep.config
    model = keras.models.clone_model(prep.model)
    model.set_weights(start)
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate, momentum=0.9, nesterov=True),
        loss=data.loss(),
        weighted_metrics=data.metrics(),
    )
    losses = [model.fit(**feed, epochs=1, shuffle=False, verbose=0).history["loss"][0] for feed in epochs_of_batches]
    _, (xt, yt, wt) = load_callable(data.name, "data")()
    test = model.evaluate(xt, yt, sample_weight=wt, batch_size=config.batch_size, verbose=0, return_dict=True)
    return losses, model.get_weights(), test


def _trained(spec: str, **options):
    """The run with fit and with the custom loop, and Keras's start weights (the same for both)."""
    fit, custom = (prepare("mlp", spec, epochs=2, loop=loop, **options) for loop in ("fit", "custom"))
    start = fit.model.get_weights()
    return fit, start, train(fit), train(custom), custom


def _assert_same(a, b, rtol=EXACT):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_allclose(left, right, rtol=rtol, atol=rtol)


def test_arrays_with_sample_weights_train_as_keras_fit_with_sample_weight(backend):
    fit_prep, start, fit, custom, custom_prep = _trained(weighted("arrays"), batch_size=BATCH)
    (x, y, w), _ = load_callable(weighted("arrays"), "data")()
    orders = epoch_orders(len(x), 2, fit_prep.config.seed)  # backendlab's seeded batch order
    feeds = [{"x": x[o], "y": y[o], "sample_weight": w[o], "batch_size": BATCH} for o in orders]
    losses, weights, test = _reference(fit_prep, start, feeds)

    assert fit.sample_weights == custom.sample_weights == ["train", "test"]
    np.testing.assert_allclose(fit.history["loss"], losses, rtol=EXACT)
    np.testing.assert_allclose(custom.history["loss"], losses, rtol=EXACT)
    np.testing.assert_allclose(custom.step_losses, fit.step_losses, rtol=EXACT)
    np.testing.assert_allclose(custom.history["accuracy"], fit.history["accuracy"], rtol=EXACT)
    _assert_same(fit_prep.model.get_weights(), weights)
    _assert_same(custom_prep.model.get_weights(), weights)
    for result in (fit, custom):
        assert result.test["loss"] == pytest.approx(test["loss"], rel=EXACT)
        assert result.test["accuracy"] == pytest.approx(test["accuracy"], rel=EXACT)


def test_the_weights_change_the_numbers(backend):
    """Against the same samples unweighted: the weights reach the loss, the metrics and evaluation."""
    from backendlab.training import run_training

    plain = run_training("mlp", weighted("unweighted"), epochs=1, batch_size=BATCH, loop="custom")
    heavy = run_training("mlp", weighted("arrays"), epochs=1, batch_size=BATCH, loop="custom")
    assert plain.sample_weights == [] and heavy.sample_weights == ["train", "test"]
    assert abs(heavy.step_losses[0] / plain.step_losses[0] - 1) > 0.01
    assert heavy.test["loss"] != pytest.approx(plain.test["loss"], rel=0.01)
    assert heavy.batch_checksums[0] != plain.batch_checksums[0]  # the proof of the batches covers the weights


def test_a_pipeline_of_weighted_batches_trains_as_keras_fit_on_it(backend):
    fit_prep, start, fit, custom, custom_prep = _trained(weighted("generator"))
    batches = load_callable(weighted("generator"), "data")()[0]
    steps = fit_prep.data.pipeline.steps
    losses, weights, test = _reference(fit_prep, start, [{"x": batches(), "steps_per_epoch": steps} for _ in "12"])

    assert fit.input_kind == custom.input_kind == "generator" and fit.sample_weights == ["train", "test"]
    np.testing.assert_allclose(fit.history["loss"], losses, rtol=EXACT)
    np.testing.assert_allclose(custom.history["loss"], losses, rtol=EXACT)
    np.testing.assert_allclose(custom.step_losses, fit.step_losses, rtol=EXACT)
    _assert_same(fit_prep.model.get_weights(), weights)
    _assert_same(custom_prep.model.get_weights(), weights)
    assert custom.test["loss"] == pytest.approx(test["loss"], rel=EXACT)


def test_padding_on_several_devices_is_refused_with_sample_weights(backend):
    import keras

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)])
    with pytest.raises(UsageError) as err:
        check_padding(model, RunSpec(devices=2, batch_size=16), 63, weighted=True)
    assert str(err.value) == (
        "each epoch's last batch of 15 samples does not split evenly across 2 devices, so the devices also train "
        "on 1 zero-weight copy of its samples, whose zero weights take the place of the data's own sample "
        "weights: use --drop-remainder, or a batch size whose last batch splits evenly"
    )
    check_padding(model, RunSpec(devices=2, batch_size=16), 64, weighted=True)  # nothing padded


def test_bench_and_tune_train_on_the_data_s_sample_weights(backend):
    """bench's and tune's cells take the weights with the samples, and tune's fit and TrainStep loops weigh
    the loss alike: the same epoch loss from the same start, and another one without the weights."""
    import importlib

    from backendlab.bench.measure import Samples
    from backendlab.tune.grid import Setting
    from backendlab.tune.worker import FitLoop, StepLoop, build

    native = importlib.import_module(f"backendlab.bench.native.{backend}")
    job = {"max_samples": 96, "run": {"seed": 0, "data": weighted("arrays")}, "input_shape": None}
    (_, _, w), _ = load_callable(weighted("arrays"), "data")()
    losses = {}
    for loop, loop_class in (("fit", FitLoop), ("trainstep", StepLoop)):
        for weighs in (True, False):
            setting = Setting(jit_compile=False, loop=loop)
            model, loss, optimizer, samples = build({"model": weighted("model")}, job, native, setting)
            np.testing.assert_array_equal(samples.w, np.concatenate([w, w])[:96])  # repeated to 96, as x and y
            samples = samples if weighs else Samples(samples.x, samples.y)
            losses[loop, weighs] = loop_class(model, loss, optimizer, setting, native).train(samples, BATCH)[0]
    assert losses["trainstep", True] == pytest.approx(losses["fit", True], rel=EXACT)
    assert losses["trainstep", False] == pytest.approx(losses["fit", False], rel=EXACT)
    assert losses["fit", True] != pytest.approx(losses["fit", False], rel=0.01)
