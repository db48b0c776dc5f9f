"""What this process trains on (backend, framework and Keras versions, devices), and how it really trains."""

from __future__ import annotations

import inspect
import platform
from typing import TYPE_CHECKING, Any

from backendlab.backends import ensure_backend, impl
from backendlab.results import BackendInfo

if TYPE_CHECKING:
    from backendlab.training.preparation import Prepared


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


def what_ran(prep: Prepared) -> dict:
    """The run as it really trains, read from the model and its data rather than from the flags.

    The compile is the model's own where the user compiled it, the batches a pipeline's own, the
    dtype policy whatever the model's factory set, and ``jit_compile`` what the backend resolved:
    Keras's ``fit`` resolves ``"auto"`` per backend and device, backendlab's custom loop compiles as
    :func:`backendlab._impl` ``resolved_jit_compile`` says.
    """
    from backendlab.training.schedule import batch_slices, samples_per_epoch
    from backendlab.training.stochastic import sublayers

    model, config, data = prep.model, prep.config, prep.data
    if data.pipeline:
        sizes = list(data.pipeline.sizes)
    else:
        sizes = [s.stop - s.start for s in batch_slices(samples_per_epoch(config, data.num_train), config.batch_size)]
    computes = {layer.dtype_policy.compute_dtype for layer in [model, *sublayers(model)]}
    custom_loop = config.loop == "custom"
    return {
        "optimizer": optimizer_facts(model.optimizer),
        "loss": loss_name(model.loss),
        "batch_size": sizes[0] if sizes else config.batch_size,
        "last_batch_size": sizes[-1] if sizes else config.batch_size,
        "steps_per_epoch": len(sizes),
        "dtype_policy": model.dtype_policy.name,
        "compute_dtypes": sorted(computes),
        "loop": config.loop,
        "jit_compile": impl().resolved_jit_compile(None) if custom_loop else bool(model.jit_compile),
        "devices": config.devices,
        "processes": config.processes,
        # More than 1 where the user compiled it so: each step then ran on its own (one_step_per_execution).
        "compiled_steps_per_execution": prep.compiled_steps_per_execution,
    }


def optimizer_facts(optimizer) -> dict:
    """``{"class": "Adam", "learning_rate": 0.005, ...}``: the learning rate and every setting not at its default.

    A LossScaleOptimizer (Keras wraps the model's own in one under ``mixed_float16``) is named as
    ``wrapped_by``, and the optimizer it wraps is the one described.
    """
    inner = getattr(optimizer, "inner_optimizer", None)
    own = inner if inner is not None else optimizer
    config = own.get_config()
    settings = {
        key: _plain(value) for key, value in config.items() if key == "learning_rate" or key in _changed(own, config)
    }
    facts = {"class": type(own).__name__, **settings}
    if inner is not None:
        facts["wrapped_by"] = type(optimizer).__name__
    return facts


def _changed(obj, config: dict) -> set[str]:
    """The keys of ``obj``'s config whose value is not its class's default (its ``__init__``'s), ``name`` aside."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(type(obj).__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {key for key, value in config.items() if key != "name" and key in defaults and value != defaults[key]}


def _plain(value: Any) -> Any:
    """A setting as JSON: a number or word as it is; a learning-rate schedule (serialized) by its class name."""
    if isinstance(value, dict):
        return value.get("class_name", str(value))
    return value


def loss_name(loss: Any) -> Any:
    """The compiled loss in words: a string as given, a Loss by its class and every setting off its default
    (``BinaryCrossentropy(label_smoothing=0.1)``), a function by its name; per output as a dict or list."""
    if isinstance(loss, dict):
        return {key: loss_name(value) for key, value in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [loss_name(value) for value in loss]
    if loss is None or isinstance(loss, str):
        return loss
    if hasattr(loss, "get_config") and not inspect.isfunction(loss):
        config = loss.get_config()
        changed = sorted(_changed(loss, config))
        return type(loss).__name__ + (f"({', '.join(f'{k}={config[k]!r}' for k in changed)})" if changed else "")
    return getattr(loss, "__name__", None) or type(loss).__name__
