"""Everything before training: the run resolved, data loaded, the model built (or loaded) and compiled
on the active backend, checked against the data, its start weights set, its random layers observed."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backendlab.backends import ensure_backend, impl, request_devices
from backendlab.data import Dataset, load_dataset
from backendlab.errors import UsageError
from backendlab.init import PortableStart, portable_init, weights_checksum
from backendlab.models import build_model, check_compatible, default_data
from backendlab.native_logs import joining_chatter_dropped
from backendlab.runspec import RunSpec
from backendlab.text import plural
from backendlab.training import randomness
from backendlab.training.files import load_model, saved_run, users_custom_objects
from backendlab.training.keras_fixes import avoid_needless_tensorflow, set_random_seed, tensorflow_left_alone
from backendlab.training.randomness import portable_seed_states
from backendlab.training.schedule import (
    check_pipeline_options,
    epoch_steps,
    first_rows,
    padded_samples,
    samples_per_epoch,
)
from backendlab.training.stochastic import (
    drawing_backend_only,
    drawing_outside_keras,
    shown_names,
    stochastic_layers,
    sublayers,
    switch_off,
)

#: The seed's optimizer: SGD with Nesterov momentum.
DEFAULT_OPTIMIZER = "sgd"
DEFAULT_LEARNING_RATE = 0.01


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


@dataclass
class Prepared:
    """A model and data ready to train on the active backend."""

    config: RunSpec  # resolved: data, optimizer and learning rate filled in
    data: Dataset
    model: Any
    stochastic: list[str]
    start: PortableStart  # the starting weights' checksum, and what was drawn portably
    # Of ``stochastic``, the layers that draw outside Keras's random ops (their framework's own generator):
    # observed under portable randomness only, where they are what stays random per backend.
    outside: list[str] = field(default_factory=list)
    # The user's compile's steps_per_execution, where it was more than the 1 backendlab trains with.
    compiled_steps_per_execution: int = 1


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
    compiled_steps = one_step_per_execution(net)
    check_padding(net, spec, dataset.num_train, dataset.weighted)
    # Built on a real sample before anything is taken from it (a lazily built subclassed model).
    sample = dataset.take("train", first_rows(spec, dataset.sample_rows))[0]
    found = stochastic_layers(net, sample)
    outside = []
    if spec.random == "portable":
        with randomness.portable():  # what still varies under it draws outside Keras's random ops
            outside = drawing_outside_keras(net, sample)
        outside += [layer for layer in drawing_backend_only(net, sample, found) if layer not in outside]
    found += [layer for layer in outside if layer not in found]
    if spec.disable_stochastic:
        switch_off(found)
    if spec.random == "portable" and resume is None:
        portable_seed_states(net, spec.seed)  # after the look above, which drew: training starts from here
    return Prepared(spec, dataset, net, shown_names(net, found), start, shown_names(net, outside), compiled_steps)


def one_step_per_execution(model) -> int:
    """Train a model its user compiled with ``steps_per_execution`` k > 1 one step per call, and return k (else 1).

    backendlab records every step's loss, which ``fit`` logs only once per k steps; the steps compute the
    same numbers either way, and PyTorch refuses k > 1. Keras builds its functions again on the next call.
    """
    compiled = int(getattr(model, "steps_per_execution", 1) or 1)
    if compiled > 1:
        model.steps_per_execution = 1
        model.train_function = model.test_function = model.predict_function = None
    return compiled


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
        # Joining, Keras seeds every process alike (keras.distribution.initialize on JAX), TensorFlow too where
        # installed; gloo says on stdout that each process joined.
        with tensorflow_left_alone(), joining_chatter_dropped():
            scope = impl(backend).join_processes(spec.processes)
    elif spec.devices > 1:
        with joining_chatter_dropped():
            scope = impl(backend).data_parallel(spec.devices)
    else:
        scope = contextlib.nullcontext()
    avoid_needless_tensorflow()
    with scope:
        set_random_seed(spec.seed)
        if resume is not None:
            saved = saved_run(resume)
            # The user's files register their custom classes when imported, and lend the rest by name.
            net = load_model(resume, users_custom_objects(saved) if saved is not None else None)
            spec = spec.replace(model=saved.model if saved else str(resume))
        else:
            net = build_model(spec.model, dataset)
        # Also builds a lazily built model on a real sample (under --processes, one of this process's own).
        learned = check_compatible(net, dataset, spec.model, first_rows(spec, dataset.sample_rows))
        start = start_weights(net, spec, resume, initial_weights, rebuild=lambda: _rebuild(spec, dataset))
        if getattr(net, "compiled", False) and net.optimizer is not None:
            optimizer_name = type(net.optimizer).__name__.lower()
        else:
            optimizer_name = spec.optimizer or DEFAULT_OPTIMIZER
            net.compile(
                optimizer=make_optimizer(optimizer_name, spec.learning_rate),
                loss=learned.loss(),
                # Weighted, as the loss is: the same numbers without sample weights, and on
                # several devices they do not count the padding of a last batch (pad_last_batch).
                weighted_metrics=learned.metrics(),
            )
    learning_rate = float(keras.ops.convert_to_numpy(net.optimizer.learning_rate))
    spec = spec.replace(optimizer=optimizer_name, learning_rate=learning_rate)
    if resume is not None:
        iterations = int(keras.ops.convert_to_numpy(net.optimizer.iterations))
        spec = spec.replace(initial_epoch=iterations // epoch_steps(spec, dataset))
    return net, spec, start


def start_weights(net, spec: RunSpec, resume=None, initial_weights=None, rebuild=None) -> PortableStart:
    """Where training starts: a saved model's weights, compare's shared file, or portable ones from the seed.

    ``rebuild`` builds the model again (see :func:`portable_init`): what the model's factory set
    after building (an adapted Normalization, weights it loaded) is kept in a portable start.
    """
    if resume is None and initial_weights is not None:
        net.load_weights(initial_weights)
    if resume is None and initial_weights is None and spec.init == "portable":
        return portable_init(net, spec.seed, rebuild)
    return PortableStart(weights_checksum(np.asarray(w) for w in net.get_weights()))


def _rebuild(spec: RunSpec, dataset: Dataset):
    """The model built again, as :func:`build_and_compile` built it, for :func:`portable_init` to compare."""
    # NumPy seeded as for the first build: values the factory draws from it are the same on every backend.
    np.random.seed(spec.seed)
    twin = build_model(spec.model, dataset)
    check_compatible(twin, dataset, spec.model, first_rows(spec, dataset.sample_rows))
    return twin


def check_padding(model, config: RunSpec, num_samples: int, weighted: bool = False) -> None:
    """Refuse a model (or data with sample weights) that zero-weight padding would train differently from one device."""
    import keras

    pad = padded_samples(config, num_samples)
    if not pad:
        return
    remainder = samples_per_epoch(config, num_samples) % config.batch_size
    what = (
        f"each epoch's last batch of {plural(remainder, 'sample')} does not split evenly across {_replicas(config)}, "
        f"so the {_replicas(config).split()[1]} also train on {pad} zero-weight "
        f"{'copy' if pad == 1 else 'copies'} of its samples"
    )
    norms = [layer.name for layer in sublayers(model) if isinstance(layer, keras.layers.BatchNormalization)]
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
    # Padding is sample weights of its own (fit's weighted metrics see 1 per real sample): the data's cannot join them.
    if config.loop == "fit" and weighted:
        raise UsageError(
            f"{what}, whose zero weights take the place of the data's own sample weights: "
            "use --drop-remainder, or a batch size whose last batch splits evenly"
        )
    # fit hands its metrics= no sample weights (the custom loop computes them on the real samples alone).
    if config.loop == "fit" and getattr(model, "compiled", False) and model.get_compile_config().get("metrics"):
        raise UsageError(
            f"{what}, which the model's metrics would count, as Keras gives them no sample weights: "
            "compile them as weighted_metrics (the same numbers without weights), or use --drop-remainder"
        )


def _replicas(config: RunSpec) -> str:
    return f"{config.processes} processes" if config.processes > 1 else f"{config.devices} devices"
