"""Which layers draw random numbers in training, observed on a sample; and switching them off."""

from __future__ import annotations

import contextlib

import numpy as np


def sublayers(model) -> list:
    """Every layer inside ``model``, nested ones included, the model itself excluded."""
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
    candidates = [layer for layer in sublayers(model) if _holds_seed_generator(layer)]
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
