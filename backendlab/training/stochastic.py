"""Which layers draw random numbers in training, observed on a sample; and switching them off.

Two observations: :func:`stochastic_layers` finds the layers whose training-mode output changes
from one pass to the next (each draw advances a ``SeedGenerator``); :func:`drawing_outside_keras`
finds, among every layer, those whose output still changes with every seed state put back between
the passes. Keras's random ops are a function of the seed state, on every backend; what varies then
draws from its framework's own generator (``torch.rand``, ``tf.random``, a JAX key made from numpy),
which portable randomness cannot reach.
"""

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
        _put_back(originals)


def _put_back(originals) -> None:
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


def drawing_outside_keras(model, sample) -> list:
    """Layers whose training-mode output on ``sample`` differs between two passes with the model's
    variables, seed states included, put back before each: they draw outside Keras's random ops.

    Every layer is a candidate, a user's layer holding no ``SeedGenerator`` too. A layer counts when its
    inputs were the same in both passes and its outputs were not; where a layer and one inside it both
    count, only the inner one is named. A call whose values cannot be read while it runs (a recurrent
    cell traced inside JAX's scan) is judged by the layer around it. The variables are put back after.
    """
    saved = [np.array(v.numpy()) for v in model.variables]

    def fresh_pass():
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
        return _outputs(model, sample)

    try:
        if all(np.array_equal(a, b) for a, b in zip(fresh_pass(), fresh_pass())):
            return []  # the common case: two passes and nothing more
        layers = sublayers(model)
        with _recording(layers) as calls:
            fresh_pass()
            first = {id(layer): calls.pop(id(layer), []) for layer in layers}
            fresh_pass()
        found = [layer for layer in layers if _varies_on_same_inputs(first[id(layer)], calls.get(id(layer), []))]
    finally:
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
    return [layer for layer in found if not any(inner in found for inner in sublayers(layer))]


def _readable(values) -> list | None:
    """Each tensor in ``values`` (nested) as a numpy array, anything else as it is; None while traced."""
    import keras

    try:
        return [
            np.asarray(keras.ops.convert_to_numpy(v)) if keras.ops.is_tensor(v) else v
            for v in keras.tree.flatten(values)
        ]
    except Exception:  # a tracer inside a compiled loop: its values exist only when that runs
        return None


def _same(a: list | None, b: list | None) -> bool:
    if a is None or b is None or len(a) != len(b):
        return a is None and b is None
    return all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) or isinstance(y, np.ndarray) else x == y for x, y in zip(a, b)
    )


def _varies_on_same_inputs(first: list[tuple], second: list[tuple]) -> bool:
    """Some call of a layer got the same inputs in both passes and gave other outputs."""
    return any(
        ins is not None and outs is not None and _same(ins, ins2) and not _same(outs, outs2)
        for (ins, outs), (ins2, outs2) in zip(first, second)
    )


@contextlib.contextmanager
def _recording(layers):
    """Within the block, every call of each layer appends (its inputs, its outputs) to ``calls[id(layer)]``."""
    calls: dict[int, list[tuple]] = {}
    originals = [(layer, layer.__dict__.get("call")) for layer in layers]
    for layer in layers:
        key = id(layer)

        def call(*args, _original=layer.call, _key=key, **kwargs):
            inputs = _readable((args, kwargs))
            outputs = _original(*args, **kwargs)
            calls.setdefault(_key, []).append((inputs, _readable(outputs)))
            return outputs

        layer.call = call
    try:
        yield calls
    finally:
        _put_back(originals)


def switch_off(layers) -> None:
    """Make each layer run as in inference (``training=False``), where it draws nothing."""
    for layer in layers:
        original = layer.call

        def call(*args, _original=original, **kwargs):
            if "training" in kwargs:
                kwargs["training"] = False
            return _original(*args, **kwargs)

        layer.call = call
