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
from dataclasses import dataclass

import numpy as np


def sublayers(model) -> list:
    """Every layer inside ``model``, nested ones included, the model itself excluded."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def shown_names(model, layers) -> list[str]:
    """The names ``layers`` go by in ``model.summary()``: a recurrent cell by its layer's (``lstm``, not
    ``lstm_cell``, which every LSTM's cell is called). One name per layer: nested models repeat names."""
    owners = {id(layer.cell): layer for layer in sublayers(model) if getattr(layer, "cell", None) is not None}
    return [owners.get(id(layer), layer).name for layer in layers]


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


@contextlib.contextmanager
def _variables_kept(model):
    """Within the block the passes may change the model's variables (BatchNorm statistics, seed states);
    they are put back after. Yields the function that puts them back, for a pass that must start afresh."""
    saved = [np.array(v.numpy()) for v in model.variables]

    def put_back() -> None:
        for variable, value in zip(model.variables, saved):
            variable.assign(value)

    try:
        yield put_back
    finally:
        put_back()


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
    found = []
    with _variables_kept(model):
        for layer in candidates:
            with _in_inference([c for c in candidates if c is not layer]):
                first, second = _outputs(model, sample), _outputs(model, sample)
            if any(not np.array_equal(a, b) for a, b in zip(first, second)):
                found.append(layer)
    return found


def drawing_outside_keras(model, sample) -> list:
    """Layers whose training-mode output on ``sample`` differs between two passes with the model's
    variables, seed states included, put back before each: they draw outside Keras's random ops.

    Every layer is a candidate, a user's layer holding no ``SeedGenerator`` too. In the second pass
    each layer is given the very inputs it had in the first, so a layer counts for its own draws, not
    for those upstream; where a layer and one inside it both count, only the inner one is named. A call
    whose values cannot be read while it runs (a recurrent cell traced inside JAX's scan) is judged by
    the layer around it. The variables are put back after.
    """
    with _variables_kept(model) as put_back:

        def fresh_pass():
            put_back()
            return _outputs(model, sample)

        if all(np.array_equal(a, b) for a, b in zip(fresh_pass(), fresh_pass())):
            return []  # the common case: two passes and nothing more
        layers = sublayers(model)
        with _recording(layers) as first:
            fresh_pass()
        with _recording(layers, replay=first) as second:
            fresh_pass()
        found = [layer for layer in layers if _varies(first.get(id(layer), []), second.get(id(layer), []))]
    return [layer for layer in found if not any(inner in found for inner in sublayers(layer))]


@dataclass
class _Call:
    """One call of a layer: what it was given, and its outputs as numpy arrays (None while traced)."""

    args: tuple
    kwargs: dict
    outputs: list | None


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


def _varies(first: list[_Call], second: list[_Call]) -> bool:
    """Some call, given the same inputs in both passes, had other outputs."""
    return any(
        a.outputs is not None
        and b.outputs is not None
        and any(not np.array_equal(x, y) for x, y in zip(a.outputs, b.outputs) if isinstance(x, np.ndarray))
        for a, b in zip(first, second)
    )


@contextlib.contextmanager
def _recording(layers, replay: dict[int, list[_Call]] | None = None):
    """Within the block, every call of each layer is appended to ``calls[id(layer)]``; with ``replay``, each
    call is given the inputs of the same call in it, where those were readable."""
    calls: dict[int, list[_Call]] = {}
    originals = [(layer, layer.__dict__.get("call")) for layer in layers]
    for layer in layers:
        key = id(layer)

        def call(*args, _original=layer.call, _key=key, **kwargs):
            mine = calls.setdefault(_key, [])
            before = (replay or {}).get(_key, [])
            if len(mine) < len(before) and before[len(mine)].outputs is not None:
                args, kwargs = before[len(mine)].args, before[len(mine)].kwargs
            outputs = _original(*args, **kwargs)
            mine.append(_Call(args, kwargs, _readable(outputs)))
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


#: Keras's random ops that portable randomness leaves on each backend's own generator (docs/randomness.md).
BACKEND_ONLY = ("gamma", "binomial", "beta")


def drawing_backend_only(model, sample, layers) -> list:
    """Those of ``layers`` that call one of ``BACKEND_ONLY`` in a training-mode pass on ``sample`` (MixUp's
    beta): each backend draws other numbers there, portable or not. The variables are put back after."""
    from keras.src import backend

    if not layers:
        return []
    calling, found = [], []
    originals = [(layer, layer.__dict__.get("call")) for layer in layers]
    draws = {name: getattr(backend.random, name) for name in BACKEND_ONLY}

    def entering(layer, original):
        def call(*args, **kwargs):
            calling.append(layer)
            try:
                return original(*args, **kwargs)
            finally:
                calling.pop()

        return call

    def noting(draw):
        def call(*args, **kwargs):
            found.extend(layer for layer in calling[-1:] if layer not in found)  # the innermost layer drew
            return draw(*args, **kwargs)

        return call

    with _variables_kept(model):
        try:
            for layer in layers:
                layer.call = entering(layer, layer.call)
            for name, draw in draws.items():
                setattr(backend.random, name, noting(draw))
            _outputs(model, sample)
        finally:
            _put_back(originals)
            for name, draw in draws.items():
                setattr(backend.random, name, draw)
    return found
