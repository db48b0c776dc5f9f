"""The seed's workflow on the active backend: build, compile, fit (or the custom loop), evaluate, predict.

Batches come in an order backendlab draws from a seeded NumPy generator, never the
backend's, so the same seed gives the same batches on every backend.
"""

from __future__ import annotations

import contextlib
import functools
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
from backendlab.keras_fixes import avoid_needless_tensorflow, set_random_seed
from backendlab.models import build_model, check_compatible, default_data
from backendlab.nonfinite import NonFiniteWatch
from backendlab.pipelines import InputRecorder, batch_checksum, batch_size_of
from backendlab.results import BackendInfo, TrainResult, check_writable
from backendlab.runspec import RunSpec
from backendlab.specs import is_callable_spec, load_callable

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


def epoch_steps(config: RunSpec, data: Dataset) -> int:
    """Training steps per epoch: a pipeline's own batches, or backendlab's over the arrays."""
    return data.pipeline.steps if data.pipeline else steps_per_epoch(config, data.num_train)


def check_pipeline_options(spec: RunSpec, data: Dataset, given_batch_size: bool) -> None:
    """A pipeline fixes its batches and their order: refuse the options that would change them."""
    if data.pipeline is None:
        return
    what = f"data {data.name!r} is a {data.kind} pipeline, which fixes its own batches"
    if given_batch_size:
        raise UsageError(f"--batch-size {spec.batch_size} does not apply: {what}; batch it in the pipeline instead")
    if spec.drop_remainder:
        raise UsageError(f"--drop-remainder does not apply: {what}; drop the last batch in the pipeline instead")
    if spec.devices > 1:
        raise UsageError(f"--devices {spec.devices} takes arrays: {what}, and backendlab splits only its own batches")
    if spec.processes > 1:
        raise UsageError(
            f"--processes {spec.processes} takes arrays: {what}, and backendlab shares out only its own batches"
        )


# --- the last, partial batch on several devices ---------------------------------------


def padded_samples(config: RunSpec, num_samples: int) -> int:
    """How many zero-weight samples the devices train on in each epoch's last batch, so each has its part.

    fit pads a last batch that does not split evenly to a multiple of the devices (JAX shards a
    batch only in equal parts; each TensorFlow replica averages its own part). torch's custom
    loop splits it unevenly and weights each rank by its share; only a rank left with no sample
    (a last batch smaller than the world) trains on one zero-weight copy.
    """
    remainder = samples_per_epoch(config, num_samples) % config.batch_size
    if config.replicas == 1 or not remainder:
        return 0
    if config.loop == "fit":
        return -remainder % config.replicas
    return max(config.replicas - remainder, 0)


def pad_last_batch(order: np.ndarray, config: RunSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """``order`` with its last batch padded for fit (:func:`padded_samples`), and fit's sample weights.

    The padding repeats the batch's own first samples (so their losses are finite) with weight 0.
    Keras divides a batch's weighted losses by all its samples ("sum_over_batch_size"), so the
    real samples weigh padded/real: the batch's loss and gradient are the mean over its real
    samples, as on one device. Nothing to pad: ``(order, None)``.
    """
    pad = padded_samples(config, len(order)) if config.loop == "fit" else 0
    if not pad:
        return order, None
    start = len(order) - len(order) % config.batch_size
    weights = np.ones(len(order) + pad, dtype="float32")
    weights[start:] = (len(order) + pad - start) / (len(order) - start)
    weights[len(order) :] = 0.0
    copies = order[start:][np.arange(pad) % (len(order) - start)]
    if config.processes > 1:  # each process pads its share with its own rows, never another's
        size, n = len(order) + pad - start, config.processes
        for i, position in enumerate(range(len(order) - start, size)):
            rank = position * n // size  # whose share the position is in, and that share's first position:
            first = start + rank * size // n  # a real row of its own, or else its first row of the epoch
            copies[i] = order[first] if first < len(order) else order[rank * config.batch_size // n]
    return np.concatenate([order, copies]), weights


def check_padding(model, config: RunSpec, num_samples: int) -> None:
    """Refuse a model that zero-weight padding would train differently from one device."""
    import keras

    pad = padded_samples(config, num_samples)
    if not pad:
        return
    remainder = samples_per_epoch(config, num_samples) % config.batch_size
    what = (
        f"each epoch's last batch of {remainder} samples does not split evenly across {_replicas(config)}, "
        f"so the {_replicas(config).split()[1]} also train on {pad} zero-weight "
        f"{'copy' if pad == 1 else 'copies'} of its samples"
    )
    norms = [layer.name for layer in _sublayers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if norms:
        raise UsageError(
            f"{what}, which BatchNormalization layer {norms[0]!r} would count in its batch statistics: "
            "use --drop-remainder"
        )
    # Re-weighting the real samples is exact only where a batch's loss is a mean over its samples.
    for loss in keras.tree.flatten(getattr(model, "loss", None)):
        if isinstance(loss, keras.losses.Loss) and loss.reduction not in ("sum_over_batch_size", "mean"):
            raise UsageError(
                f"{what}, and loss {loss.name!r} (reduction {loss.reduction!r}) is not a mean over the batch: "
                "use --drop-remainder"
            )
    # fit hands its metrics= no sample weights (the custom loop computes them on the real samples alone).
    if config.loop == "fit" and getattr(model, "compiled", False) and model.get_compile_config().get("metrics"):
        raise UsageError(
            f"{what}, which the model's metrics would count, as Keras gives them no sample weights: "
            "compile them as weighted_metrics (the same numbers without weights), or use --drop-remainder"
        )


def _replicas(config: RunSpec) -> str:
    return f"{config.processes} processes" if config.processes > 1 else f"{config.devices} devices"


# --- several processes: each reads only its share of every global batch ------------------

#: A folder where each process of a ``--processes`` run writes the training samples it read (for tests).
RECORD_READS = "BACKENDLAB_RECORD_READS"


def process_index() -> int:
    """Which process of a ``--processes`` run (or torchrun rank) this is: 0 in a run of one."""
    return int(os.environ.get("RANK", os.environ.get("BACKENDLAB_PROCESS_ID", "0")))


def own_share(order: np.ndarray, config: RunSpec, rank: int | None = None) -> np.ndarray:
    """The rows of ``order`` process ``rank`` trains on: its slice of each global batch, batch after batch.

    Global batch ``k`` is ``order[k*B:(k+1)*B]``; process ``r`` of ``N`` takes its ``r``-th part of it
    (as even as can be, in process order), the way a DistributedSampler hands each rank its share.
    Concatenated, the shares are the process's own data for the epoch: a local batch of ``B/N`` is its
    share of the global batch of the same number.
    """
    rank = process_index() if rank is None else rank
    n = config.processes
    parts = []
    for part in batch_slices(len(order), config.batch_size):
        batch = order[part]
        parts.append(batch[rank * len(batch) // n : (rank + 1) * len(batch) // n])
    return np.concatenate(parts) if parts else order[:0]


def take_own(data: Dataset, index: np.ndarray) -> tuple[Any, Any]:
    """``data.take("train", index)``, where ``index`` is this process's own share; noted where asked for."""
    folder = os.environ.get(RECORD_READS)
    if folder:
        with open(Path(folder) / f"reads-{process_index()}.txt", "a") as f:
            f.write(" ".join(map(str, np.asarray(index).tolist())) + "\n")
    return data.take("train", index)


@functools.cache
def _sample_means_class():
    import keras

    class SampleMeans(keras.callbacks.Callback):
        """The epoch's loss trackers as means over its real samples, as fit logs the loss on one device.

        Keras's ``Mean`` trackers (the loss, each output's loss, a model's own) weigh a batch by
        its size, padding included (:func:`pad_last_batch`), or, where its shape is not known
        when traced, count it once per replica (TensorFlow's per-output losses), which a last,
        partial batch makes a different mean. Each batch's value is recovered from the running
        means and re-weighed by its real samples in ``means``; a tracker that counted exactly
        those is left as Keras logged it.

        On a padded batch fit gives the loss's sample weights to the compiled metrics too, where
        padded/real would count the batch as padded-size: during fit they see 1 per real sample.
        """

        def __init__(self, real: list[int], padded: list[int], replicas: int):
            super().__init__()
            self.real, self.padded = np.array(real, dtype=float), np.array(padded, dtype=float)
            self.replicas = replicas
            self.means: dict[str, float] = {}

        def on_train_begin(self, logs=None):
            self.own = None
            if np.array_equal(self.real, self.padded):
                return
            model = self.model
            self.own = (model.__dict__.get("compute_metrics"),)
            original = model.compute_metrics

            def compute_metrics(x, y, y_pred, sample_weight=None):
                if sample_weight is not None:
                    sample_weight = keras.tree.map_structure(
                        lambda w: keras.ops.cast(keras.ops.greater(w, 0), w.dtype), sample_weight
                    )
                return original(x, y, y_pred, sample_weight)

            model.compute_metrics = compute_metrics

        def on_train_end(self, logs=None):
            if self.own is None:
                return
            if self.own[0] is None:
                del self.model.compute_metrics  # back to the class's
            else:
                self.model.compute_metrics = self.own[0]

        def on_epoch_begin(self, epoch, logs=None):
            self.runs: dict[str, list[float]] = defaultdict(list)

        def on_train_batch_end(self, batch, logs=None):
            for key, value in (logs or {}).items():
                self.runs[key].append(float(value))

        def on_epoch_end(self, epoch, logs=None):
            for tracker in self.model.metrics:  # the loss tracker, the per-output ones, a model's own
                runs = self.runs.get(tracker.name, [])
                if not runs or tracker.name not in (logs or {}) or not isinstance(tracker, keras.metrics.Mean):
                    continue
                real, padded = self.real[: len(runs)], self.padded[: len(runs)]
                count = float(keras.ops.convert_to_numpy(tracker.count))
                if count == real.sum():
                    continue  # it counted the real samples
                if count == padded.sum():
                    counted = padded
                elif count in (len(runs), self.replicas * len(runs)):
                    counted = np.ones(len(runs))  # once per batch, or once per replica and batch
                else:
                    continue  # counted in a way not known here
                values = np.diff(np.array(runs) * np.cumsum(counted), prepend=0.0) / counted
                self.means[tracker.name] = float(values @ real / real.sum())

    return SampleMeans


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
    saved = [np.array(v.numpy()) for v in model.variables]
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
    # RunSpec's default batch size is 32: another one was asked for.
    check_pipeline_options(spec, dataset, spec.batch_size != RunSpec.batch_size)
    net, spec, start = build_and_compile(spec, dataset, resume, initial_weights)
    check_padding(net, spec, dataset.num_train)
    # Built on a real sample before anything is taken from it (a lazily built subclassed model).
    sample = dataset.take("train", first_rows(spec, dataset.sample_rows))[0]
    found = stochastic_layers(net, sample)
    if spec.disable_stochastic:
        switch_off(found)
    return Prepared(spec, dataset, net, [layer.name for layer in found], start)


def first_rows(spec: RunSpec, num_samples: int) -> np.ndarray:
    """The samples a model is first run on: the first batch's, or under ``--processes`` this process's share of it."""
    rows = np.arange(min(spec.batch_size, num_samples))
    return own_share(rows, spec) if spec.processes > 1 else rows


def data_parallel_policy(spec: RunSpec, backend) -> RunSpec:
    """How ``--devices N`` trains on ``backend``: its loop, its batches, its devices asked for before import.

    A backend that needs one process per device (torch under torchrun) trains with the custom
    loop, as Keras's fit has no path for that; the others drive their engine through fit.
    Each epoch's last, partial batch is kept, as on one device (see :func:`padded_samples`);
    ``drop_remainder`` drops it.
    """
    if spec.replicas == 1:
        return spec
    loop = spec.loop
    flag = f"--processes {spec.processes}" if spec.processes > 1 else f"--devices {spec.devices}"
    if backend.launcher:
        loop = "custom"
    elif loop == "custom":
        raise UsageError(
            f"on {backend.name}, {flag} trains with fit, which drives {backend.data_parallel}; "
            "the custom loop runs data-parallel on torch only"
        )
    request_devices(backend, spec.devices)
    return spec.replace(loop=loop)


def build_and_compile(
    spec: RunSpec, dataset: Dataset, resume=None, initial_weights=None
) -> tuple[Any, RunSpec, PortableStart]:
    """The model, built (or loaded from ``resume``) and compiled inside the data-parallel scope."""
    import keras

    backend = ensure_backend()
    if spec.processes > 1:
        scope = impl(backend).join_processes(spec.processes)
    elif spec.devices > 1:
        scope = impl(backend).data_parallel(spec.devices)
    else:
        scope = contextlib.nullcontext()
    avoid_needless_tensorflow()
    with scope:
        set_random_seed(spec.seed)
        if resume is not None:
            saved = saved_run(resume)
            if saved is not None and is_callable_spec(saved.model):
                load_callable(saved.model, "model")  # the user's file registers its custom classes
            net = load_model(resume)
            spec = spec.replace(model=saved.model if saved else str(resume))
        else:
            net = build_model(spec.model, dataset)
        # Also builds a lazily built model on a real sample (under --processes, one of this process's own).
        check_compatible(net, dataset, spec.model, first_rows(spec, dataset.sample_rows))
        start = start_weights(net, spec, resume, initial_weights)
        if getattr(net, "compiled", False) and net.optimizer is not None:
            optimizer_name = type(net.optimizer).__name__.lower()
        else:
            optimizer_name = spec.optimizer or DEFAULT_OPTIMIZER
            net.compile(
                optimizer=make_optimizer(optimizer_name, spec.learning_rate),
                loss=dataset.loss(),
                # Weighted, as the loss is: the same numbers without sample weights, and on
                # several devices they do not count the padding of a last batch (pad_last_batch).
                weighted_metrics=dataset.metrics(),
            )
    learning_rate = float(keras.ops.convert_to_numpy(net.optimizer.learning_rate))
    spec = spec.replace(optimizer=optimizer_name, learning_rate=learning_rate)
    if resume is not None:
        iterations = int(keras.ops.convert_to_numpy(net.optimizer.iterations))
        spec = spec.replace(initial_epoch=iterations // epoch_steps(spec, dataset))
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


def _foreign_optimizer(config: dict) -> dict:
    """``custom_objects`` that load an optimizer Keras recorded under one backend's own module.

    Keras 3.15 saves an optimizer compiled on PyTorch as ``keras.src.backend.torch.optimizers...``:
    loading the file on another backend imports torch for it (seconds), and where torch is not
    installed it fails ("Could not deserialize class 'SGD' because its parent module
    keras.src.backend.torch.optimizers.torch_sgd cannot be imported"). The public optimizer of the
    same name is that optimizer on every backend.
    """
    import keras

    optimizer = (config.get("compile_config") or {}).get("optimizer")
    if not isinstance(optimizer, dict) or not str(optimizer.get("module", "")).startswith("keras.src.backend."):
        return {}
    public = getattr(keras.optimizers, str(optimizer.get("class_name")), None)
    return {optimizer.get("registered_name") or optimizer["class_name"]: public} if public else {}


def load_model(path: str | os.PathLike):
    """A ``.keras`` file, saved on any backend, with its compile settings and optimizer state.

    A file that is not one, or that Keras will not load, is a UsageError naming the file and why.
    """
    import keras

    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise UsageError(f"{str(path)!r} is not a saved .keras model file")
    config = _archive_config(path)
    if '"module": "keras_hub' in json.dumps(config):
        # keras_hub registers its layers (BertBackbone, ...) with Keras when imported, and only then.
        with contextlib.suppress(ImportError):
            import keras_hub  # noqa: F401
    avoid_needless_tensorflow()
    try:
        model = keras.saving.load_model(path, custom_objects=_foreign_optimizer(config) or None)
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
    if getattr(model, "compiled", False):
        # Its compile settings came from the backend that saved it: JAX's resolved jit_compile=True
        # would mean torch.compile here. Let Keras resolve "auto" again for this backend.
        model.jit_compile = None
    return model


#: The log key under which fit reports each batch's own loss (see :func:`record_step_losses`).
STEP_LOSS = "_backendlab_step_loss"


def record_step_losses(model) -> bool:
    """Make ``fit`` log each batch's own loss beside the epoch's running mean; False where it cannot.

    Keras logs only the running mean of the epoch's losses, kept in float32: recovering a batch's
    loss from it costs about k * 6e-8 relative at step k. So the model's loss tracker (the one
    ``Mean`` every backend's ``train_step`` updates with the batch's loss) is replaced by one that
    also keeps the last value; its variables are metric variables, so JAX's stateless step carries
    them too. Under a data-parallel strategy the tracker's replicas would each hold their share, so
    there backendlab keeps recovering losses from the running mean.
    """
    import keras

    tracker = getattr(model, "_loss_tracker", None)  # Keras 3's private name; absent: fall back
    if isinstance(tracker, _step_loss_tracker_class()):
        return True  # installed by an earlier run on this model
    if type(tracker) is not keras.metrics.Mean:
        return False  # absent, or a tracker of the user's own: left as it is
    # Set past Keras's attribute tracking, which refuses new state on a built model; Keras reads
    # the tracker from this attribute alone (``Trainer.metrics``), so nothing else must know of it.
    object.__setattr__(model, "_loss_tracker", _step_loss_tracker_class()(name=tracker.name))
    return True


@functools.cache
def _step_loss_tracker_class():
    import keras

    class StepLossTracker(keras.metrics.Mean):
        def __init__(self, name="loss", dtype=None):
            super().__init__(name=name, dtype=dtype)
            self.last = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="last")

        def update_state(self, values, sample_weight=None):
            super().update_state(values, sample_weight)
            self.last.assign(keras.ops.cast(keras.ops.mean(values), self.dtype))

        def reset_state(self):
            super().reset_state()
            self.last.assign(0)

        def result(self):
            return {self.name: super().result(), STEP_LOSS: keras.ops.cast(self.last, self.dtype)}

    return StepLossTracker


def _take_rows(tree, part: slice):
    return {k: v[part] for k, v in tree.items()} if isinstance(tree, dict) else tree[part]


def _fit_feed(prep: Prepared, order, recorder: InputRecorder) -> dict:
    """What ``fit`` takes for one epoch: the pipeline's batches, as read, or the arrays in ``order``
    (under ``--processes``, this process's share of every global batch, and nothing else).

    Each step's checksum is of its real samples, without fit's zero-weight padding of a last batch
    (:func:`pad_last_batch`), so that it equals the custom loop's, which pads nothing.
    """
    config, data = prep.config, prep.data
    if data.pipeline:
        # A generator of the batches, read and checksummed as fit asks for them.
        batches = recorder.epoch(data.kind, data.pipeline.source, data.pipeline.steps)
        return {"x": batches, "steps_per_epoch": data.pipeline.steps}
    real = order
    order, weights = pad_last_batch(order, config)
    if config.processes > 1:
        _note_global_batches(real, config, recorder)
        positions = own_share(np.arange(len(order)), config)
        x, y = take_own(data, order[positions])
        own_weights = None if weights is None else weights[positions]
        local = config.batch_size // config.processes
        return {**impl().process_batches(prep.model, x, y, own_weights, local), "shuffle": False}
    x, y = data.take("train", order)
    for part in batch_slices(len(real), config.batch_size):  # the padding, if any, comes after them
        recorder.checksums.append(batch_checksum(_take_rows(x, part), _take_rows(y, part)))
    return {"x": x, "y": y, "batch_size": config.batch_size, "shuffle": False, "sample_weight": weights}


def _note_global_batches(order, config: RunSpec, recorder: InputRecorder) -> None:
    """Under ``--processes``: each step's checksum is of its global batch's sample numbers in backendlab's
    seeded order, which every process knows; no process reads another's rows to prove what it was fed."""
    for part in batch_slices(len(order), config.batch_size):
        rows = np.asarray(order[part], dtype=np.int64)
        recorder.checksums.append(batch_checksum(rows, rows[:0]))


def _epoch_batches(prep: Prepared, order, recorder: InputRecorder):
    """One epoch's ``(x, y, shares)`` for the custom loop: the pipeline's batches, or backendlab's in
    ``order``. Under ``--processes``, ``x, y`` are this process's share of each global batch and
    ``shares`` every process's share size (None otherwise)."""
    config, data = prep.config, prep.data
    if data.pipeline:
        for x, y in recorder.epoch(data.kind, data.pipeline.source):
            yield x, y, None
        return
    if config.processes > 1:
        _note_global_batches(order, config, recorder)
    for part in batch_slices(len(order), config.batch_size):
        if config.processes > 1:
            own = own_share(order[part], config)
            shares = [len(own_share(order[part], config, r)) for r in range(config.processes)]
            # A share left empty (a last batch smaller than the world) trains on its first row, weighted 0.
            x, y = take_own(data, own if len(own) else own_share(order, config)[:1])
        else:
            shares = None
            x, y = data.take("train", order[part])
            recorder.checksums.append(batch_checksum(x, y))
        yield x, y, shares


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
        means = _sample_means_class()(real, sizes, config.replicas)
        try:
            h = prep.model.fit(
                **_fit_feed(prep, order, recorder),
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

    from backendlab.loop import TrainStep

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
        for x, y, shares in _epoch_batches(prep, order, recorder):
            n = f32(batch_size_of(x) if shares is None else sum(shares))
            try:
                x, y, loss, y_pred = step.run(x, y) if shares is None else step.run(x, y, shares=shares)
                if shares is not None:  # the global batch's labels, for the compiled metrics
                    y = impl().gather_shares(y, shares)
            except Exception as exc:
                if not watch.check_error(len(step_losses) + 1, exc):
                    raise
                step_losses.append(float("nan"))
                running.append(float("nan"))
                break
            # The compiled metrics accumulate over the epoch, as in fit.
            metrics = prep.model.compute_metrics(x, y, y_pred, sample_weight=None)
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
        start_checksum=prep.start.checksum,
        start_note=prep.start.note,
        nonfinite=watch.found,
        input_kind=data.kind,
        batch_checksums=recorder.checksums,
        input_wait_s=recorder.wait_s,
        repeat_differs_at=data.pipeline.repeat_differs_at if data.pipeline else None,
    )
    if watch.found:
        raise NonFiniteError(watch.found.message, result)
    test = model.evaluate(data.x_test, data.y_test, batch_size=config.batch_size, verbose=0, return_dict=True)
    result.test = {k: float(v) for k, v in test.items() if k != STEP_LOSS}
    return result


def predict(prep: Prepared) -> Any:
    """Predictions on the test split, as NumPy arrays (a dict for several outputs).

    Under ``--processes`` each process predicts the whole test split by itself: JAX's global arrays
    cannot be read back where they span other processes' devices.
    """
    with outside_distribution():
        return prep.model.predict(prep.data.x_test, batch_size=prep.config.batch_size, verbose=0)


def check_save_path(path: str | os.PathLike) -> None:
    """Before training: ``--save`` must name a ``.keras`` file in a place that can be written."""
    if Path(path).suffix != ".keras":
        raise UsageError(f"--save needs a path ending in .keras, got {str(path)!r}")
    check_writable(path, "--save")


#: The entry of a ``.keras`` archive where backendlab keeps the run that trained the model.
RUN_ENTRY = "backendlab_run.json"


def save_model(model, path: str | os.PathLike, spec: RunSpec | None = None) -> Path:
    """``model.save`` to a temporary name, then rename: no half-written ``.keras`` file.

    With ``spec``, the file also carries the run (as :func:`saved_run` reads it), so
    ``train --resume FILE`` continues it without repeating its flags.
    """
    path = Path(path)
    check_save_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        with outside_distribution():
            model.save(tmp)
        if spec is not None:  # Keras reads only its own entries; this one rides along
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(RUN_ENTRY, json.dumps(spec.to_dict()))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def outside_distribution():
    """Within the block, no Keras distribution: under ``--processes`` only process 0 saves, and a variable
    Keras makes while saving (an optimizer's) must not wait for the other processes to make it too;
    each process predicts by itself."""
    import keras

    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


def trained_spec(prep: Prepared) -> RunSpec:
    """The run as a saved model carries it: its settings, with the epochs done so far."""
    return prep.config.replace(initial_epoch=prep.config.initial_epoch + prep.config.epochs)


def saved_run(path: str | os.PathLike) -> RunSpec | None:
    """The run a backendlab-saved ``.keras`` file carries (epochs done in ``initial_epoch``), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            if RUN_ENTRY not in archive.namelist():
                return None
            return RunSpec.from_dict(json.loads(archive.read(RUN_ENTRY)))
    except (OSError, zipfile.BadZipFile, ValueError, TypeError, UsageError):
        return None  # not a backendlab file, or a damaged one: load_model says what is wrong with it


def resumed_spec(path: str | os.PathLike, spec: RunSpec, given: set[str]) -> RunSpec:
    """The run to continue from ``path``: the one saved in it, with the settings in ``given`` taken from ``spec``.

    A file saved elsewhere carries no run: ``spec`` as it is.
    """
    saved = saved_run(path)
    if saved is None:
        return spec
    return saved.replace(**{name: getattr(spec, name) for name in given}, initial_epoch=0)


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
        result.saved_model = str(save_model(prep.model, save, trained_spec(prep)))
    return result
