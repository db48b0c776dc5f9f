"""The seed's workflow on the active backend: build, compile, fit (or the custom loop), evaluate, predict.

Batches come in an order backendlab draws from a seeded NumPy generator, never the
backend's, so the same seed gives the same batches on every backend.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backendlab.backends import ensure_backend, impl, request_devices
from backendlab.data import Dataset, load_dataset
from backendlab.errors import UsageError
from backendlab.models import build_model, check_compatible, default_data
from backendlab.results import BackendInfo, TrainConfig, TrainResult

#: The seed's optimizer: SGD with Nesterov momentum.
DEFAULT_OPTIMIZER = "sgd"
DEFAULT_LEARNING_RATE = 0.01

StepCallback = Callable[[int, float], None]  # (global step, that batch's loss)


def backend_info() -> BackendInfo:
    """Backend name, framework version, Keras version and devices of this process."""
    backend = ensure_backend()
    import keras

    return BackendInfo(
        backend=backend.name,
        framework=backend.framework,
        framework_version=backend.framework_version,
        keras_version=keras.__version__,
        devices=impl(backend).devices(),
        python_version=platform.python_version(),
    )


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return value


def make_optimizer(name: str, learning_rate: float | None):
    """``sgd`` is the seed's SGD(momentum=0.9, nesterov=True); other names go to ``keras.optimizers.get``."""
    import keras

    if learning_rate is not None and not learning_rate > 0:
        raise UsageError(f"learning rate must be positive, got {learning_rate!r}")
    if name.lower() == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate or DEFAULT_LEARNING_RATE, momentum=0.9, nesterov=True)
    try:
        optimizer = keras.optimizers.get(name)
    except ValueError:
        raise UsageError(
            f"unknown optimizer {name!r}: use a keras.optimizers name such as sgd, adam, rmsprop, adamw"
        ) from None
    if learning_rate is not None:
        optimizer.learning_rate = learning_rate
    return optimizer


def epoch_orders(num_samples: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The sample order of every epoch, from a seeded NumPy generator shared by all backends."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(num_samples) for _ in range(epochs)]


def batch_slices(num_samples: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, num_samples)) for i in range(0, num_samples, batch_size)]


def samples_per_epoch(config: TrainConfig, num_samples: int) -> int:
    """All samples, or only the full batches' when the last, partial batch is dropped."""
    return num_samples - num_samples % config.batch_size if config.drop_remainder else num_samples


def steps_per_epoch(config: TrainConfig, num_samples: int) -> int:
    return len(batch_slices(samples_per_epoch(config, num_samples), config.batch_size))


# --- stochastic layers ----------------------------------------------------------------


def _sublayers(model) -> list:
    return list(model._flatten_layers(include_self=False, recursive=True))


def stochastic_layers(model) -> list:
    """Layers that draw random numbers in training (Dropout, GaussianNoise, random augmentation, ...).

    Found by what they hold, a ``keras.random.SeedGenerator``, so user layers count too;
    a Dropout with rate 0 (as inside MultiHeadAttention) draws nothing and is left out.
    """
    import keras

    found = []
    for layer in _sublayers(model):
        if not any(isinstance(v, keras.random.SeedGenerator) for v in vars(layer).values()):
            continue
        if any(getattr(layer, attr, None) == 0 for attr in ("rate", "stddev", "factor")):
            continue
        found.append(layer)
    return found


def switch_off(layers) -> None:
    """Make each layer run as in inference (``training=False``), where it draws nothing."""
    for layer in layers:
        original = layer.call

        def call(*args, _original=original, **kwargs):
            if "training" in kwargs:
                kwargs["training"] = False
            return _original(*args, **kwargs)

        layer.call = call


# --- the run --------------------------------------------------------------------------


@dataclass
class Prepared:
    """A model and data ready to train on the active backend."""

    config: TrainConfig
    data: Dataset
    model: Any
    stochastic: list[str]


def prepare(
    model: str = "mlp",
    data: str | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: str | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    loop: str = "fit",
    initial_weights: str | os.PathLike | None = None,
    disable_stochastic: bool = False,
    resume: str | os.PathLike | None = None,
    devices: int = 1,
    drop_remainder: bool = False,
) -> Prepared:
    """Load data, build and compile the model, check they fit together: everything before training.

    ``resume`` names a ``.keras`` file saved after training, on any backend: its weights
    and optimizer state are loaded and training goes on from the epoch it had reached,
    with the batch order an uninterrupted run would have had.

    ``devices`` > 1 trains data-parallel on the backend's own engine (``BACKENDS[...].data_parallel``),
    the global batch split evenly across devices; each epoch's last, partial batch is then
    dropped (``drop_remainder``), so every step splits evenly. Pass ``drop_remainder=True``
    to a one-device run to reproduce the same batches.
    """
    check_positive("epochs", epochs)
    check_positive("batch size", batch_size)
    check_positive("devices", devices)
    if loop not in ("fit", "custom"):
        raise UsageError(f"loop must be 'fit' or 'custom', got {loop!r}")
    backend = ensure_backend()
    if devices > 1:
        if batch_size % devices:
            raise UsageError(
                f"batch size {batch_size} does not split evenly across {devices} devices: "
                f"use a global batch size that is a multiple of {devices}"
            )
        if backend.launcher:  # one process per device: Keras's fit has no path for that; the custom loop does
            loop = "custom"
        elif loop == "custom":
            raise UsageError(
                f"on {backend.name}, --devices {devices} trains with fit, which drives {backend.data_parallel}; "
                "the custom loop runs data-parallel on torch only"
            )
        drop_remainder = True
        request_devices(devices)
    data = data or default_data(model)
    dataset = load_dataset(data, seed)
    import keras

    scope = impl(backend).data_parallel(devices) if devices > 1 else contextlib.nullcontext()
    with scope:
        keras.utils.set_random_seed(seed)
        if resume is not None:
            net = load_model(resume)
            model = str(resume)
        else:
            net = build_model(model, dataset)
        check_compatible(net, dataset, model)
        if initial_weights is not None:
            net.load_weights(initial_weights)
        found = stochastic_layers(net)
        if disable_stochastic:
            switch_off(found)
        if getattr(net, "compiled", False) and net.optimizer is not None:
            optimizer_name = type(net.optimizer).__name__.lower()
        else:
            optimizer_name = optimizer or DEFAULT_OPTIMIZER
            net.compile(
                optimizer=make_optimizer(optimizer_name, learning_rate),
                loss=dataset.loss(),
                metrics=dataset.metrics(),
            )
    config = TrainConfig(
        model=model,
        data=data,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer_name,
        learning_rate=float(keras.ops.convert_to_numpy(net.optimizer.learning_rate)),
        seed=seed,
        loop=loop,
        devices=devices,
        drop_remainder=drop_remainder,
    )
    if resume is not None:
        config.initial_epoch = int(keras.ops.convert_to_numpy(net.optimizer.iterations)) // steps_per_epoch(
            config, dataset.num_train
        )
    return Prepared(config, dataset, net, [layer.name for layer in found])


def load_model(path: str | os.PathLike):
    """A ``.keras`` file, saved on any backend, with its compile settings and optimizer state."""
    import keras

    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise UsageError(f"{str(path)!r} is not a saved .keras model file")
    return keras.saving.load_model(path)


def _fit_epochs(prep: Prepared, orders, on_step: StepCallback | None):
    """``model.fit`` one epoch at a time on backendlab's batch order; per-step losses from the running mean."""
    import keras

    config, data = prep.config, prep.data
    sizes = [s.stop - s.start for s in batch_slices(len(orders[0]), config.batch_size)]
    step_losses: list[float] = []
    running: list[float] = []

    class StepLosses(keras.callbacks.Callback):
        # Keras logs the running mean of the epoch's losses weighted by batch size;
        # the difference of running totals recovers each batch's own loss.
        def on_epoch_begin(self, epoch, logs=None):
            self.total, self.seen = 0.0, 0

        def on_train_batch_end(self, batch, logs=None):
            seen = self.seen + sizes[batch]
            running.append(float(logs["loss"]))
            total = running[-1] * seen
            step_losses.append((total - self.total) / sizes[batch])
            self.total, self.seen = total, seen
            if on_step:
                on_step(len(step_losses), step_losses[-1])

    history: dict[str, list[float]] = defaultdict(list)
    for epoch, order in enumerate(orders, start=config.initial_epoch):
        x, y = data.take("train", order)
        h = prep.model.fit(
            x,
            y,
            batch_size=config.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=False,
            verbose=0,
            callbacks=[StepLosses()],
        )
        for key, values in h.history.items():
            history[key].extend(float(v) for v in values)
    return dict(history), step_losses, running


def _custom_epochs(prep: Prepared, orders, on_step: StepCallback | None):
    import keras

    from backendlab.loop import TrainStep

    config, data = prep.config, prep.data
    step = TrainStep(prep.model, prep.model.loss, prep.model.optimizer)
    history: dict[str, list[float]] = defaultdict(list)
    step_losses: list[float] = []
    running: list[float] = []
    f32 = np.float32
    metrics: dict[str, float] = {}
    for order in orders:
        # The running mean in float32, as Keras's Mean tracker keeps it in fit's logs.
        total, seen = f32(0), f32(0)
        prep.model.reset_metrics()
        for part in batch_slices(len(order), config.batch_size):
            x, y, loss, y_pred = step.run(*data.take("train", order[part]))
            # The compiled metrics accumulate over the epoch, as in fit.
            metrics = prep.model.compute_metrics(x, y, y_pred, sample_weight=None)
            loss = float(keras.ops.convert_to_numpy(loss))
            n = f32(part.stop - part.start)
            total, seen = f32(total + f32(loss) * n), f32(seen + n)
            step_losses.append(loss)
            running.append(float(f32(total / seen)))
            if on_step:
                on_step(len(step_losses), loss)
        history["loss"].append(running[-1])
        for name, value in metrics.items():
            if name != "loss":
                history[name].append(float(keras.ops.convert_to_numpy(value)))
    return dict(history), step_losses, running


def train(prep: Prepared, on_step: StepCallback | None = None) -> TrainResult:
    """Train, then evaluate on the test split; the time counts training alone."""
    config, data, model = prep.config, prep.data, prep.model
    # Every epoch's order is drawn from the start, so a resumed run sees what an
    # uninterrupted one would have seen.
    orders = epoch_orders(data.num_train, config.initial_epoch + config.epochs, config.seed)[config.initial_epoch :]
    orders = [order[: samples_per_epoch(config, data.num_train)] for order in orders]
    run_epochs = _fit_epochs if config.loop == "fit" else _custom_epochs
    start = time.perf_counter()
    history, step_losses, running = run_epochs(prep, orders, on_step)
    impl().sync([v.value for v in model.trainable_variables])
    train_time = time.perf_counter() - start
    test = model.evaluate(data.x_test, data.y_test, batch_size=config.batch_size, verbose=0, return_dict=True)
    return TrainResult(
        info=backend_info(),
        config=config,
        history=history,
        step_losses=step_losses,
        step_running_loss=running,
        test={k: float(v) for k, v in test.items()},
        train_time_s=train_time,
        num_params=int(model.count_params()),
        stochastic_layers=prep.stochastic,
    )


def predict(prep: Prepared) -> Any:
    """Predictions on the test split, as NumPy arrays (a dict for several outputs)."""
    return prep.model.predict(prep.data.x_test, batch_size=prep.config.batch_size, verbose=0)


def save_model(model, path: str | os.PathLike) -> Path:
    """``model.save`` to a temporary name, then rename: no half-written ``.keras`` file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise UsageError(f"--save needs a path ending in .keras, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def run_training(
    model: str = "mlp",
    data: str | None = None,
    *,
    save: str | os.PathLike | None = None,
    on_step: StepCallback | None = None,
    **options: Any,
) -> TrainResult:
    """The seed's workflow in one call: compile, fit (or ``loop="custom"``), evaluate; optionally save.

    Options are those of :func:`prepare`: epochs, batch_size, optimizer, learning_rate,
    seed, loop, initial_weights, disable_stochastic.
    """
    prep = prepare(model, data, **options)
    result = train(prep, on_step)
    if save is not None:
        result.saved_model = str(save_model(prep.model, save))
    return result
