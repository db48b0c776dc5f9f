"""The model zoo, each model written once with Keras 3 APIs, and a user's own models.

Every builder takes the :class:`~backendlab.data.Dataset` it will train on and sizes
its inputs and outputs from it; none of them has backend-specific code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from backendlab.data import Dataset, Target
from backendlab.errors import UsageError, one_line
from backendlab.specs import call_user, check_spec, is_callable_spec, load_callable


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


# --- real architectures, built from configs: nothing is downloaded --------------------------


def _one_target(data: Dataset, model: str) -> Target:
    if isinstance(data.target, dict):
        raise UsageError(f"model {model!r} has one output, but data {data.name!r} has outputs {sorted(data.target)}")
    return data.target


def mobilenet(data: Dataset):
    """keras.applications.MobileNetV3Small with its own classifier (and its Dropout), untrained, for small images."""
    import keras

    target = _one_target(data, "mobilenet")
    return keras.applications.MobileNetV3Small(
        input_shape=_single_input(data, "mobilenet", 3, "RGB image inputs (height, width, 3)"),
        alpha=0.75,
        minimalistic=True,
        weights=None,
        classes=target.units,
        classifier_activation=target.activation,
        include_preprocessing=False,  # the images are in [0, 1] already
        name="mobilenet",
    )


def resnet(data: Dataset):
    """A small ResNet from keras.applications: ResNet50's own builder and bottleneck blocks, two stacks of one.

    ResNet50 itself (23.6M weights, 16 blocks) takes minutes to train and compare on a CPU; this is the
    same code with its stacks cut short (Keras exports ResNet50/101/152 only, so the builder is
    ``keras.src.applications.resnet``'s: tested with the Keras in constraints.txt).
    """
    from keras.src.applications.resnet import ResNet, stack_residual_blocks_v1

    target = _one_target(data, "resnet")

    def stacks(x):
        x = stack_residual_blocks_v1(x, 16, 1, stride1=1, name="conv2")
        return stack_residual_blocks_v1(x, 32, 1, name="conv3")

    return ResNet(
        stacks,
        preact=False,
        use_bias=True,
        input_shape=_single_input(data, "resnet", 3, "RGB image inputs (height, width, 3)"),
        weights=None,
        classes=target.units,
        classifier_activation=target.activation,
        name="resnet",
    )


def _keras_hub(model: str):
    try:
        import keras_hub
    except ImportError:
        raise UsageError(
            f"model {model!r} is built from a keras_hub config, and keras_hub is not installed: "
            "pip install -c constraints.txt --no-deps keras-hub && pip install -c constraints.txt regex tokenizers"
        ) from None
    return keras_hub


def _token_input(data: Dataset, model: str):
    import keras

    (length,) = _single_input(data, model, 1, "token-id inputs (sequence length,)")
    return keras.Input((length,), dtype="int32", name="token_ids"), length


def bert(data: Dataset, layers: int = 2, width: int = 32, heads: int = 2):
    """A small BERT text classifier: keras_hub's BertBackbone from a config, its pooled output, Dropout, Dense."""
    import keras

    from backendlab.data import VOCABULARY

    hub = _keras_hub("bert")
    tokens, length = _token_input(data, "bert")
    backbone = hub.models.BertBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=width,
        intermediate_dim=2 * width,
        max_sequence_length=length,
        num_segments=2,
    )
    ones = keras.ops.ones_like(tokens)
    h = backbone({"token_ids": tokens, "segment_ids": keras.ops.zeros_like(tokens), "padding_mask": ones})
    h = keras.layers.Dropout(0.1)(h["pooled_output"])
    return keras.Model(tokens, _heads(keras, h, _one_target(data, "bert")), name="bert")


def gpt(data: Dataset, layers: int = 2, width: int = 32, heads: int = 2):
    """A small GPT-2 causal language model: keras_hub's GPT2Backbone from a config, and a Dense softmax head.

    GPT2CausalLM ties its head to the token embedding; calling the backbone's embedding from outside
    it makes a ``.keras`` file that Keras cannot load back, so the head here is a layer of its own.
    """
    import keras

    from backendlab.data import VOCABULARY

    hub = _keras_hub("gpt")
    tokens, length = _token_input(data, "gpt")
    target = _one_target(data, "gpt")
    if target.kind != "multiclass" or target.units != VOCABULARY:
        raise UsageError(
            f"model 'gpt' predicts the next of {VOCABULARY} token ids; data {data.name!r} has {target.describe()}"
        )
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=width,
        intermediate_dim=2 * width,
        max_sequence_length=length,
    )
    h = backbone({"token_ids": tokens, "padding_mask": keras.ops.ones_like(tokens)})
    return keras.Model(tokens, keras.layers.Dense(VOCABULARY, activation="softmax", name="next_token")(h), name="gpt")


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
    "mobilenet": ZooModel(mobilenet, "images", "keras.applications.MobileNetV3Small, untrained, 32x32 images"),
    "resnet": ZooModel(
        resnet, "images", "keras.applications ResNet (ResNet50's builder, 2 bottleneck blocks), 32x32 images"
    ),
    "bert": ZooModel(bert, "tokens", "BERT text classifier from a keras_hub config: 2 layers, width 32"),
    "gpt": ZooModel(gpt, "next_tokens", "GPT-2 causal language model from a keras_hub config: 2 layers, width 32"),
}


#: The zoo models built from keras_hub, an optional install (see the README).
HUB_MODELS = ("bert", "gpt")


def default_data(model: str) -> str:
    return MODELS[model].default_data if model in MODELS else "breast_cancer"


def _unknown_model(name: str) -> str:
    return (
        f"unknown model {name!r}: use one of {', '.join(MODELS)}, "
        "or path/to/file.py:build / package.module:build returning a keras.Model"
    )


def check_model(name: str) -> None:
    """What :func:`build_model` would refuse at once, told before any framework is imported: an unknown
    name, a missing file or package, a file that does not parse or has no such function (``check_spec``)."""
    if name in MODELS:
        return
    if not is_callable_spec(name):
        raise UsageError(_unknown_model(name))
    check_spec(name, "model")


def build_model(name: str, data: Dataset):
    """A zoo model by name, or the ``keras.Model`` a user's ``build()`` returns (compiled or not)."""
    import keras

    if name in MODELS:
        return MODELS[name].build(data)
    if not is_callable_spec(name):
        raise UsageError(_unknown_model(name))
    model = call_user(load_callable(name, "model"), name, "model")
    if not isinstance(model, keras.Model):
        raise UsageError(f"model {name!r} returned {type(model).__name__}, not a keras.Model")
    return model


def _probabilities(y_pred) -> bool:
    """Whether an output's rows were seen to be probabilities: none negative, each summing to 1 (a softmax)."""
    import keras

    values = np.asarray(keras.ops.convert_to_numpy(y_pred), dtype="float64")
    return bool(values.size) and bool((values >= 0).all()) and np.allclose(values.sum(axis=-1), 1.0, atol=1e-2)


def check_compatible(model, data: Dataset, name: str, rows: np.ndarray | None = None) -> Dataset:
    """Run the model on two samples (the first, or two of ``rows``) and check its outputs against the targets.

    Returns ``data`` with its targets as the model's outputs learn them (:meth:`Target.learned_by`: a
    2-unit softmax learns 0/1 labels as class ids), whose ``loss()`` backendlab compiles the model with.
    Raises one UsageError that names the model, the data and the shapes that disagree. The width of
    each output is checked only where backendlab chooses the loss: a model compiled with a loss of
    its own is its own judge.
    """
    x, _ = data.take("train", np.arange(min(2, data.sample_rows)) if rows is None else rows[:2])
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
    if getattr(model, "compiled", False) and getattr(model, "loss", None) is not None:
        return data
    learned = {}
    for key, target in targets.items():
        shape = tuple(outputs[key].shape)
        learned[key] = target.learned_by(shape[-1], _probabilities(outputs[key]))
        if learned[key] is None:
            where = f"output {key!r}" if key else "output"
            raise UsageError(
                f"model {name!r} {where} has shape {(None,) + shape[1:]} but data {data.name!r} has "
                f"{target.describe()}: its last dimension must be {target.widths()}"
            )
    return replace(data, target=learned if isinstance(data.target, dict) else learned[None])
