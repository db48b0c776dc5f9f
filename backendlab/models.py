"""The model zoo, each model written once with Keras 3 APIs, and a user's own models.

Every builder takes the :class:`~backendlab.data.Dataset` it will train on and sizes
its inputs and outputs from it; none of them has backend-specific code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backendlab.data import Dataset, Target
from backendlab.errors import UsageError, one_line
from backendlab.specs import call_user, is_callable_spec, load_callable


def _heads(keras, h, target: Target | dict[str, Target]):
    """One Dense output per target, named after it when there are several."""
    if isinstance(target, dict):
        return {name: keras.layers.Dense(t.units, activation=t.activation, name=name)(h) for name, t in target.items()}
    return keras.layers.Dense(target.units, activation=target.activation, name="output")(h)


def _single_input(data: Dataset, model: str, rank: int | None, wants: str) -> tuple[int, ...]:
    if isinstance(data.x_train, dict):
        raise UsageError(f"model {model!r} takes one input, but data {data.name!r} has inputs {sorted(data.x_train)}")
    shape = tuple(data.x_train.shape[1:])
    if rank is not None and len(shape) != rank:
        raise UsageError(f"model {model!r} needs {wants}; data {data.name!r} has inputs of shape {shape}")
    return shape


def mlp(data: Dataset):
    """The seed's Sequential stack: Dense relu layers, then a sigmoid or softmax output."""
    import keras

    shape = _single_input(data, "mlp", None, "")
    target = data.target
    if isinstance(target, dict):
        raise UsageError(f"model 'mlp' has one output, but data {data.name!r} has outputs {sorted(target)}")
    return keras.Sequential(
        ([keras.Input(shape)] + ([keras.layers.Flatten()] if len(shape) > 1 else []))
        + [
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(target.units, activation=target.activation),
        ],
        name="mlp",
    )


def cnn(data: Dataset):
    """Conv2D and pooling for small images such as the 8x8 digits."""
    import keras

    inputs = keras.Input(_single_input(data, "cnn", 3, "image inputs (height, width, channels)"))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    return keras.Model(inputs, _heads(keras, h, data.target), name="cnn")


def rnn(data: Dataset):
    """An LSTM sequence classifier."""
    import keras

    inputs = keras.Input(_single_input(data, "rnn", 2, "sequence inputs (steps, features)"))
    h = keras.layers.LSTM(32)(inputs)
    return keras.Model(inputs, _heads(keras, h, data.target), name="rnn")


def transformer(data: Dataset, width: int = 32, heads: int = 2):
    """One small encoder block: self-attention and a feed-forward layer, each with a residual and LayerNorm."""
    import keras

    inputs = keras.Input(_single_input(data, "transformer", 2, "sequence inputs (steps, features)"))
    h = keras.layers.Dense(width)(inputs)
    attended = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=width // heads)(h, h)
    h = keras.layers.LayerNormalization()(h + attended)
    fed = keras.layers.Dense(2 * width, activation="relu")(h)
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(width)(fed))
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, _heads(keras, h, data.target), name="transformer")


def functional(data: Dataset):
    """Two inputs through one shared layer, then two outputs (Functional API)."""
    import keras

    if not isinstance(data.x_train, dict) or len(data.x_train) != 2:
        raise UsageError(f"model 'functional' needs two named inputs; data {data.name!r} has {_describe_inputs(data)}")
    if len({a.shape[1:] for a in data.x_train.values()}) != 1:
        raise UsageError(
            f"model 'functional' applies one shared layer to both inputs, so they need the same shape; "
            f"data {data.name!r} has {_describe_inputs(data)}"
        )
    if not isinstance(data.target, dict) or len(data.target) < 2:
        raise UsageError(f"model 'functional' needs several named outputs; data {data.name!r} has one")
    inputs = {name: keras.Input(a.shape[1:], name=name) for name, a in data.x_train.items()}
    shared = keras.layers.Dense(16, activation="relu", name="shared")
    h = keras.layers.Concatenate()([shared(x) for x in inputs.values()])
    h = keras.layers.Dense(16, activation="relu")(h)
    return keras.Model(inputs, _heads(keras, h, data.target), name="functional")


def _describe_inputs(data: Dataset) -> str:
    if isinstance(data.x_train, dict):
        return "inputs " + ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in data.x_train.items())
    return f"one input of shape {tuple(data.x_train.shape[1:])}"


@dataclass(frozen=True)
class ZooModel:
    build: Callable[[Dataset], Any]
    default_data: str
    description: str


MODELS: dict[str, ZooModel] = {
    "mlp": ZooModel(mlp, "breast_cancer", "Sequential Dense relu stack, sigmoid/softmax output (the seed)"),
    "cnn": ZooModel(cnn, "digits", "Conv2D/MaxPooling2D/Dense for 8x8 images"),
    "rnn": ZooModel(rnn, "sequences", "LSTM sequence classifier"),
    "transformer": ZooModel(transformer, "sequences", "MultiHeadAttention encoder block"),
    "functional": ZooModel(functional, "pairs", "Functional API: two inputs, a shared layer, two outputs"),
}


def default_data(model: str) -> str:
    return MODELS[model].default_data if model in MODELS else "breast_cancer"


def build_model(name: str, data: Dataset):
    """A zoo model by name, or the ``keras.Model`` a user's ``build()`` returns (compiled or not)."""
    import keras

    if name in MODELS:
        return MODELS[name].build(data)
    if not is_callable_spec(name):
        raise UsageError(
            f"unknown model {name!r}: use one of {', '.join(MODELS)}, "
            "or path/to/file.py:build / package.module:build returning a keras.Model"
        )
    model = call_user(load_callable(name, "model"), name, "model")
    if not isinstance(model, keras.Model):
        raise UsageError(f"model {name!r} returned {type(model).__name__}, not a keras.Model")
    return model


def check_compatible(model, data: Dataset, name: str, rows: np.ndarray | None = None) -> None:
    """Run the model on two samples (the first, or two of ``rows``) and check its outputs against the targets.

    Raises one UsageError that names the model, the data and the shapes that disagree.
    """
    x, _ = data.take("train", np.arange(min(2, data.num_train)) if rows is None else rows[:2])
    try:
        y_pred = model(x, training=False)
    except Exception as exc:
        raise UsageError(
            f"model {name!r} does not accept the inputs of data {data.name!r} ({_describe_inputs(data)}): "
            f"{one_line(exc)}"
        ) from None
    if isinstance(y_pred, (list, tuple)) and isinstance(data.target, dict):
        y_pred = dict(zip(getattr(model, "output_names", None) or [], y_pred))
    targets = data.target if isinstance(data.target, dict) else {None: data.target}
    outputs = y_pred if isinstance(y_pred, dict) else {None: y_pred}
    if set(targets) != set(outputs):
        raise UsageError(
            f"model {name!r} has outputs {sorted(map(str, outputs))} but data {data.name!r} "
            f"has targets {sorted(map(str, targets))}"
        )
    for key, target in targets.items():
        shape = tuple(outputs[key].shape)
        if shape[-1] != target.units:
            where = f"output {key!r}" if key else "output"
            raise UsageError(
                f"model {name!r} {where} has shape {(None,) + shape[1:]} but data {data.name!r} has "
                f"{target.describe()}: its last dimension must be {target.units}"
            )
