"""Training on prepared model and data: fit or backendlab's custom loop, epoch by epoch; then evaluate, predict.

Both loops read the same batches (:mod:`backendlab.training.feeds`) and log the same numbers:
each step's own loss, the running mean fit logs, the compiled metrics per epoch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from backendlab.backends import impl
from backendlab.errors import NonFiniteError
from backendlab.pipelines import InputRecorder, batch_size_of
from backendlab.results import TrainResult
from backendlab.training import randomness
from backendlab.training.feeds import epoch_batches, fit_feed
from backendlab.training.files import outside_distribution
from backendlab.training.hooks import STEP_LOSS, evaluation_means_class, record_step_losses, sample_means_class
from backendlab.training.info import backend_info
from backendlab.training.nonfinite import NonFiniteWatch
from backendlab.training.schedule import batch_slices, epoch_orders, padded_samples, samples_per_epoch

if TYPE_CHECKING:
    from backendlab.training.preparation import Prepared


StepCallback = Callable[[int, float], None]  # (global step, that batch's loss)


def _fit_epochs(prep: Prepared, orders, on_step: StepCallback | None, watch: NonFiniteWatch, recorder: InputRecorder):
    """``model.fit`` one epoch at a time on backendlab's batch order (or the pipeline's), with each batch's own loss.

    Stops after the first step or epoch in which ``watch`` finds a NaN or inf; history keeps complete epochs only.
    """
    import keras

    config, data = prep.config, prep.data
    if data.pipeline:
        real = sizes = list(data.pipeline.sizes)
    else:
        real = [s.stop - s.start for s in batch_slices(len(orders[0]), config.batch_size)]
        # As fit sees them: the last batch padded to split across the devices (pad_last_batch).
        sizes = [*real[:-1], real[-1] + padded_samples(config, len(orders[0]))]
    step_losses: list[float] = []
    running: list[float] = []

    exact = config.replicas == 1 and record_step_losses(prep.model)

    class StepLosses(keras.callbacks.Callback):
        # Each batch's own loss, as the tracker logs it; in data-parallel runs the difference of
        # the running totals (Keras's running mean, weighted by batch size) recovers it.
        def on_epoch_begin(self, epoch, logs=None):
            self.total, self.seen = 0.0, 0

        def on_train_batch_end(self, batch, logs=None):
            seen = self.seen + sizes[batch]
            running.append(float(logs["loss"]))
            total = running[-1] * seen
            step_losses.append(float(logs[STEP_LOSS]) if exact else (total - self.total) / sizes[batch])
            self.total, self.seen = total, seen
            if on_step:
                on_step(len(step_losses), step_losses[-1])
            if watch.check_logs(len(step_losses), {k: v for k, v in logs.items() if k != STEP_LOSS}):
                prep.model.stop_training = True  # as keras.callbacks.TerminateOnNaN does

    history: dict[str, list[float]] = defaultdict(list)
    for epoch, order in enumerate(orders, start=config.initial_epoch):
        means = sample_means_class()(real, sizes, config.replicas)
        try:
            h = prep.model.fit(
                **fit_feed(prep, order, recorder),
                epochs=epoch + 1,
                initial_epoch=epoch,
                verbose=0,
                callbacks=[StepLosses(), means],
            )
        except Exception as exc:
            if not watch.check_error(len(step_losses) + 1, exc):
                raise
            step_losses.append(float("nan"))
            running.append(float("nan"))
        if watch.found:
            break
        for key, values in h.history.items():
            if key != STEP_LOSS:
                history[key].extend(float(v) for v in values)
        for key, mean in means.means.items():  # where Keras's trackers counted padding, or batches
            history[key][-1] = mean
            if key == "loss":
                running[-1] = mean
        if watch.check_weights(len(step_losses), prep.model):
            break
    return dict(history), step_losses, running


def _custom_epochs(
    prep: Prepared, orders, on_step: StepCallback | None, watch: NonFiniteWatch, recorder: InputRecorder
):
    """backendlab's TrainStep on the same batches, logging what fit logs; stops as :func:`_fit_epochs` does."""
    import keras

    from backendlab.training.step import TrainStep

    step = TrainStep(prep.model, prep.model.loss, prep.model.optimizer, random=prep.config.random)
    history: dict[str, list[float]] = defaultdict(list)
    step_losses: list[float] = []
    running: list[float] = []
    f32 = np.float32
    metrics: dict[str, float] = {}
    for order in orders:
        # The running mean in float32, as Keras's Mean tracker keeps it in fit's logs.
        total, seen = f32(0), f32(0)
        prep.model.reset_metrics()
        for x, y, w, shares in epoch_batches(prep, order, recorder):
            n = f32(batch_size_of(x) if shares is None else sum(shares))
            try:
                x, y, w, loss, y_pred = step.run(x, y, w, shares=shares)
                if shares is not None:  # the global batch's labels and weights, for the compiled metrics
                    y, w = (None if t is None else impl().gather_shares(t, shares) for t in (y, w))
            except Exception as exc:
                if not watch.check_error(len(step_losses) + 1, exc):
                    raise
                step_losses.append(float("nan"))
                running.append(float("nan"))
                break
            # The compiled metrics accumulate over the epoch, as in fit (weighted_metrics with the sample weights).
            metrics = prep.model.compute_metrics(x, y, y_pred, sample_weight=w)
            loss = float(keras.ops.convert_to_numpy(loss))
            total, seen = f32(total + f32(loss) * n), f32(seen + n)
            step_losses.append(loss)
            running.append(float(f32(total / seen)))
            if on_step:
                on_step(len(step_losses), loss)
            logs = {name: keras.ops.convert_to_numpy(value) for name, value in metrics.items() if name != "loss"}
            if watch.check_logs(len(step_losses), {"loss": loss, **logs}):
                break
        if watch.found:
            break
        history["loss"].append(running[-1])
        for name, value in metrics.items():
            if name != "loss":
                history[name].append(float(keras.ops.convert_to_numpy(value)))
        if watch.check_weights(len(step_losses), prep.model):
            break
    return dict(history), step_losses, running


def train(prep: Prepared, on_step: StepCallback | None = None) -> TrainResult:
    """Train, then evaluate on the test split; the time counts training alone.

    Raises :class:`~backendlab.errors.NonFiniteError` at the first NaN or inf in a step's loss or
    metrics or in the weights after an epoch, carrying the run up to there as its ``result``.
    """
    config, data, model = prep.config, prep.data, prep.model
    # Every epoch's order is drawn from the start, so a resumed run sees what an
    # uninterrupted one would have seen.
    if data.pipeline:
        orders = [None] * config.epochs  # the pipeline's own order
    else:
        orders = epoch_orders(data.num_train, config.initial_epoch + config.epochs, config.seed)
        orders = [order[: samples_per_epoch(config, data.num_train)] for order in orders[config.initial_epoch :]]
    run_epochs = _fit_epochs if config.loop == "fit" else _custom_epochs
    watch = NonFiniteWatch()
    recorder = InputRecorder()
    start = time.perf_counter()
    with randomness.use(config.random):
        history, step_losses, running = run_epochs(prep, orders, on_step, watch, recorder)
    impl().sync([v.value for v in model.trainable_variables])
    train_time = time.perf_counter() - start
    result = TrainResult(
        info=backend_info(),
        config=config,
        history=history,
        step_losses=step_losses,
        step_running_loss=running,
        test={},
        train_time_s=train_time,
        num_params=int(model.count_params()),
        stochastic_layers=prep.stochastic,
        stochastic_outside=prep.outside,
        start_checksum=prep.start.checksum,
        start_note=prep.start.note,
        start_variables=prep.start.variables(),
        nonfinite=watch.found,
        input_kind=data.kind,
        batch_checksums=recorder.checksums,
        input_wait_s=recorder.wait_s,
        repeat_differs_at=data.pipeline.repeat_differs_at if data.pipeline else None,
        sample_weights=[s for s, weighted in (("train", data.weighted), ("test", data.w_test is not None)) if weighted],
    )
    if watch.found:
        raise NonFiniteError(watch.found.message, result)
    test_batches = [s.stop - s.start for s in batch_slices(data.num_test, config.batch_size)]
    means = evaluation_means_class()(test_batches, config.replicas)
    with randomness.use(config.random):  # a layer that draws in inference too
        test = model.evaluate(
            data.x_test,
            data.y_test,
            sample_weight=data.w_test,
            batch_size=config.batch_size,
            verbose=0,
            return_dict=True,
            callbacks=[means],
        )
    result.test = {k: float(v) for k, v in {**test, **means.means}.items() if k != STEP_LOSS}
    return result


def predict(prep: Prepared) -> Any:
    """Predictions on the test split, as NumPy arrays (a dict for several outputs).

    Under ``--processes`` each process predicts the whole test split by itself: JAX's global arrays
    cannot be read back where they span other processes' devices.
    """
    with outside_distribution(), randomness.use(prep.config.random):
        return prep.model.predict(prep.data.x_test, batch_size=prep.config.batch_size, verbose=0)
