"""The seed's workflow on the active backend: build, compile, fit (or the custom loop), evaluate, predict.

Batches come in an order backendlab draws from a seeded NumPy generator, never the
backend's, so the same seed gives the same batches on every backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backendlab.backends import ensure_backend, impl, request_devices
from backendlab.data import Dataset, load_dataset
from backendlab.errors import NonFiniteError, UsageError, one_line
from backendlab.init import PortableStart, portable_init, weights_checksum
from backendlab.models import build_model, check_compatible, default_data
from backendlab.nonfinite import NonFiniteWatch
from backendlab.results import BackendInfo, TrainResult, check_writable
from backendlab.runspec import RunSpec

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


def make_optimizer(name: str, learning_rate: float | None):
    """``sgd`` is the seed's SGD(momentum=0.9, nesterov=True); other names go to ``keras.optimizers.get``."""
    import keras

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


def samples_per_epoch(config: RunSpec, num_samples: int) -> int:
    """All samples, or only the full batches' when the last, partial batch is dropped."""
    return num_samples - num_samples % config.batch_size if config.drop_remainder else num_samples


def steps_per_epoch(config: RunSpec, num_samples: int) -> int:
    return len(batch_slices(samples_per_epoch(config, num_samples), config.batch_size))


# --- stochastic layers ----------------------------------------------------------------


def _sublayers(model) -> list:
    return list(model._flatten_layers(include_self=False, recursive=True))


def _holds_seed_generator(layer) -> bool:
    import keras

    return any(isinstance(v, keras.random.SeedGenerator) for v in vars(layer).values())


@contextlib.contextmanager
def _in_inference(layers):
    """Within the block, each layer runs as in inference (``training=False``), where it draws nothing."""
    originals = [(layer, layer.__dict__.get("call")) for layer in layers]
    switch_off(layers)
    try:
        yield
    finally:
        for layer, own in originals:
            if own is None:
                del layer.call  # back to the class's call
            else:
                layer.call = own


def _outputs(model, sample) -> list:
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(y)) for y in keras.tree.flatten(model(sample, training=True))]


def stochastic_layers(model, sample) -> list:
    """Layers that are seen to draw random numbers in a training-mode forward pass on ``sample``.

    Observed, not guessed: a candidate is a layer holding a ``keras.random.SeedGenerator``
    (user layers count too); it counts as stochastic only if, with every other candidate run
    as in inference, two training-mode passes on the same sample differ. So a GRU with dropout
    0 or a ``Dropout(0.0)`` is deterministic. The model's variables (BatchNorm statistics, seed
    states) are put back as they were, so training starts from the same state.
    """
    candidates = [layer for layer in _sublayers(model) if _holds_seed_generator(layer)]
    if not candidates:
        return []
    saved = [np.array(v.numpy() if hasattr(v, "numpy") else v.value) for v in model.variables]
    found = []
    try:
        for layer in candidates:
            with _in_inference([c for c in candidates if c is not layer]):
                first, second = _outputs(model, sample), _outputs(model, sample)
            if any(not np.array_equal(a, b) for a, b in zip(first, second)):
                found.append(layer)
    finally:
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
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

    config: RunSpec  # resolved: data, optimizer and learning rate filled in
    data: Dataset
    model: Any
    stochastic: list[str]
    start: PortableStart  # the starting weights' checksum, and what was drawn portably


def prepare(
    model: RunSpec | str = "mlp",
    data: str | None = None,
    *,
    resume: str | os.PathLike | None = None,
    initial_weights: str | os.PathLike | None = None,
    **options: Any,
) -> Prepared:
    """Load data, build and compile the model, check they fit together: everything before training.

    ``model`` is a model name with the :class:`RunSpec` fields as keywords
    (``prepare("cnn", epochs=3)``), or a whole RunSpec. ``resume`` names a ``.keras`` file saved after training,
    on any backend: its weights and optimizer state are loaded and training goes on from the
    epoch it had reached, with the batch order an uninterrupted run would have had.
    ``initial_weights`` names a ``.weights.h5`` file to start from (compare's shared start).
    """
    spec = model
    if isinstance(spec, str):
        spec = RunSpec(model=spec, data=data, **options)
    elif data is not None or options:
        spec = spec.replace(**({"data": data} if data is not None else {}), **options)
    spec = data_parallel_policy(spec.check(), ensure_backend())
    spec = spec.replace(data=spec.data or default_data(spec.model))
    dataset = load_dataset(spec.data, spec.seed)
    net, spec, start = build_and_compile(spec, dataset, resume, initial_weights)
    # Built on a real sample before anything is taken from it (a lazily built subclassed model).
    sample = dataset.take("train", np.arange(min(spec.batch_size, dataset.num_train)))[0]
    found = stochastic_layers(net, sample)
    if spec.disable_stochastic:
        switch_off(found)
    return Prepared(spec, dataset, net, [layer.name for layer in found], start)


def data_parallel_policy(spec: RunSpec, backend) -> RunSpec:
    """How ``--devices N`` trains on ``backend``: its loop, its batches, its devices asked for before import.

    A backend that needs one process per device (torch under torchrun) trains with the custom
    loop, as Keras's fit has no path for that; the others drive their engine through fit.
    Each epoch's last, partial batch is dropped so every step splits evenly.
    """
    if spec.devices == 1:
        return spec
    loop = spec.loop
    if backend.launcher:
        loop = "custom"
    elif loop == "custom":
        raise UsageError(
            f"on {backend.name}, --devices {spec.devices} trains with fit, which drives {backend.data_parallel}; "
            "the custom loop runs data-parallel on torch only"
        )
    request_devices(backend, spec.devices)
    return spec.replace(loop=loop, drop_remainder=True)


def build_and_compile(
    spec: RunSpec, dataset: Dataset, resume=None, initial_weights=None
) -> tuple[Any, RunSpec, PortableStart]:
    """The model, built (or loaded from ``resume``) and compiled inside the data-parallel scope."""
    import keras

    backend = ensure_backend()
    scope = impl(backend).data_parallel(spec.devices) if spec.devices > 1 else contextlib.nullcontext()
    with scope:
        keras.utils.set_random_seed(spec.seed)
        if resume is not None:
            net = load_model(resume)
            spec = spec.replace(model=str(resume))
        else:
            net = build_model(spec.model, dataset)
        check_compatible(net, dataset, spec.model)  # also builds a lazily built model on a real sample
        start = start_weights(net, spec, resume, initial_weights)
        if getattr(net, "compiled", False) and net.optimizer is not None:
            optimizer_name = type(net.optimizer).__name__.lower()
        else:
            optimizer_name = spec.optimizer or DEFAULT_OPTIMIZER
            net.compile(
                optimizer=make_optimizer(optimizer_name, spec.learning_rate),
                loss=dataset.loss(),
                metrics=dataset.metrics(),
            )
    learning_rate = float(keras.ops.convert_to_numpy(net.optimizer.learning_rate))
    spec = spec.replace(optimizer=optimizer_name, learning_rate=learning_rate)
    if resume is not None:
        iterations = int(keras.ops.convert_to_numpy(net.optimizer.iterations))
        spec = spec.replace(initial_epoch=iterations // steps_per_epoch(spec, dataset.num_train))
    return net, spec, start


def start_weights(net, spec: RunSpec, resume=None, initial_weights=None) -> PortableStart:
    """Where training starts: a saved model's weights, compare's shared file, or portable ones from the seed."""
    if resume is None and initial_weights is not None:
        net.load_weights(initial_weights)
    if resume is None and initial_weights is None and spec.init == "portable":
        return portable_init(net, spec.seed)
    return PortableStart(weights_checksum(np.asarray(w) for w in net.get_weights()))


def _archive_config(path: Path) -> dict:
    """The model config inside a ``.keras`` file (a zip archive holding ``config.json``), or why it is not one."""
    name = f"{str(path)!r} is not a saved .keras model file"
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{name}: it is not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except KeyError:
        raise UsageError(f"{name}: the archive holds no config.json") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UsageError(f"{name}: its config.json cannot be read ({one_line(exc)})") from None


def _lambda_layers(config) -> list[str]:
    """Names of the Lambda layers anywhere in a model config."""
    if isinstance(config, list):
        return [name for item in config for name in _lambda_layers(item)]
    if not isinstance(config, dict):
        return []
    own = [config.get("config", {}).get("name", "?")] if config.get("class_name") == "Lambda" else []
    return own + [name for value in config.values() for name in _lambda_layers(value)]


def load_model(path: str | os.PathLike):
    """A ``.keras`` file, saved on any backend, with its compile settings and optimizer state.

    A file that is not one, or that Keras will not load, is a UsageError naming the file and why.
    """
    import keras

    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise UsageError(f"{str(path)!r} is not a saved .keras model file")
    config = _archive_config(path)
    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # a file from elsewhere can fail in any layer's from_config
        chain = [exc]  # Keras wraps the cause ("Could not locate class 'Fault'") in a generic message
        while (chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 20:
            chain.append(chain[-1].__cause__ or chain[-1].__context__)
        if not any("safe_mode" in str(e) for e in chain):
            reason = one_line(chain[-1]).split(" Full object config")[0]
            raise UsageError(f"{str(path)!r} cannot be loaded: {reason}") from None
        lambdas = _lambda_layers(config)
        what = f"its Lambda layer {lambdas[0]!r} holds" if lambdas else "it holds"
        raise UsageError(
            f"{str(path)!r} cannot be loaded: {what} Python code, which Keras does not load from a file (safe mode)"
        ) from None


def _fit_epochs(prep: Prepared, orders, on_step: StepCallback | None, watch: NonFiniteWatch):
    """``model.fit`` one epoch at a time on backendlab's batch order; per-step losses from the running mean.

    Stops after the first step or epoch in which ``watch`` finds a NaN or inf; history keeps complete epochs only.
    """
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
            if watch.check_logs(len(step_losses), logs):
                prep.model.stop_training = True  # as keras.callbacks.TerminateOnNaN does

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
        if watch.found:
            break
        for key, values in h.history.items():
            history[key].extend(float(v) for v in values)
        if watch.check_weights(len(step_losses), prep.model):
            break
    return dict(history), step_losses, running


def _custom_epochs(prep: Prepared, orders, on_step: StepCallback | None, watch: NonFiniteWatch):
    """backendlab's TrainStep on the same batches, logging what fit logs; stops as :func:`_fit_epochs` does."""
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
    orders = epoch_orders(data.num_train, config.initial_epoch + config.epochs, config.seed)[config.initial_epoch :]
    orders = [order[: samples_per_epoch(config, data.num_train)] for order in orders]
    run_epochs = _fit_epochs if config.loop == "fit" else _custom_epochs
    watch = NonFiniteWatch()
    start = time.perf_counter()
    history, step_losses, running = run_epochs(prep, orders, on_step, watch)
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
        start_checksum=prep.start.checksum,
        start_note=prep.start.note,
        nonfinite=watch.found,
    )
    if watch.found:
        raise NonFiniteError(watch.found.message, result)
    test = model.evaluate(data.x_test, data.y_test, batch_size=config.batch_size, verbose=0, return_dict=True)
    result.test = {k: float(v) for k, v in test.items()}
    return result


def predict(prep: Prepared) -> Any:
    """Predictions on the test split, as NumPy arrays (a dict for several outputs)."""
    return prep.model.predict(prep.data.x_test, batch_size=prep.config.batch_size, verbose=0)


def check_save_path(path: str | os.PathLike) -> None:
    """Before training: ``--save`` must name a ``.keras`` file in a place that can be written."""
    if Path(path).suffix != ".keras":
        raise UsageError(f"--save needs a path ending in .keras, got {str(path)!r}")
    check_writable(path, "--save")


def save_model(model, path: str | os.PathLike) -> Path:
    """``model.save`` to a temporary name, then rename: no half-written ``.keras`` file."""
    path = Path(path)
    check_save_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def run_training(
    model: RunSpec | str = "mlp",
    data: str | None = None,
    *,
    save: str | os.PathLike | None = None,
    on_step: StepCallback | None = None,
    **options: Any,
) -> TrainResult:
    """The seed's workflow in one call: compile, fit (or ``loop="custom"``), evaluate; optionally save.

    ``model`` is a model name or a whole :class:`~backendlab.runspec.RunSpec`; ``options`` are
    :class:`RunSpec` fields (epochs, batch_size, optimizer, learning_rate, seed, loop, devices,
    drop_remainder, disable_stochastic) and :func:`prepare`'s ``resume`` and ``initial_weights``.
    Training that goes NaN or inf raises :class:`~backendlab.errors.NonFiniteError`, and nothing is saved.
    """
    if save is not None:
        check_save_path(save)
    prep = prepare(model, data, **options)
    result = train(prep, on_step)
    if save is not None:
        result.saved_model = str(save_model(prep.model, save))
    return result
