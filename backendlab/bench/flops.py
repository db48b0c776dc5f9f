"""FLOPs per sample, counted from a Keras model's layers (runs in a worker: it reads Keras objects).

Convention (also in every report): 2 FLOPs per multiply-add of the layers' matrix
products; activations, pooling, normalization and bias additions are not counted, so
the figure is a slight undercount and GFLOP/s a lower bound. A training step counts 3x
the forward pass: the forward product, the gradient with respect to the inputs and the
gradient with respect to the weights each cost about the same.

A layer whose kind is not known here counts as zero and is named in ``unknown``; a model
whose layers' shapes cannot be read (a subclassed model never called symbolically)
gives ``None``.
"""

from __future__ import annotations

import math

TRAIN_FACTOR = 3


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _prod(dims) -> int:
    return math.prod(int(d) for d in dims)


def _dense(layer) -> float:
    kernel = layer.kernel
    rows = _prod(_shape(layer.output)[1:-1])  # Dense on a sequence applies per step
    return 2.0 * rows * _prod(kernel.shape)


def _conv(layer) -> float:
    out_positions = _prod(
        _shape(layer.output)[1:-1] if layer.data_format == "channels_last" else _shape(layer.output)[2:]
    )
    return 2.0 * out_positions * _prod(layer.kernel.shape)  # kernel: spatial x in x out (/groups already)


def _recurrent(layer, gates: int) -> float:
    cell = layer.cell
    steps = int(_shape(layer.input)[1])
    features = int(_shape(layer.input)[-1])
    return 2.0 * steps * gates * (features + cell.units) * cell.units


def _attention(layer) -> float:
    heads, key_dim = layer.num_heads, layer.key_dim
    value_dim = layer.value_dim or key_dim
    shapes = layer._build_shapes_dict  # what build() saw: query_shape, value_shape, maybe key_shape
    q_shape, v_shape = shapes["query_shape"], shapes["value_shape"]
    k_shape = shapes.get("key_shape") or v_shape
    tq, tv = _prod(q_shape[1:-1]), _prod(v_shape[1:-1])
    out_dim = int(layer._output_shape[-1]) if layer._output_shape else int(q_shape[-1])
    macs = (
        tq * int(q_shape[-1]) * heads * key_dim  # query projection
        + tv * int(k_shape[-1]) * heads * key_dim  # key projection
        + tv * int(v_shape[-1]) * heads * value_dim  # value projection
        + tq * tv * heads * key_dim  # scores
        + tq * tv * heads * value_dim  # weighted values
        + tq * heads * value_dim * out_dim  # output projection
    )
    return 2.0 * macs


COUNTERS = {
    "Dense": _dense,
    "Conv1D": _conv,
    "Conv2D": _conv,
    "Conv3D": _conv,
    "LSTM": lambda layer: _recurrent(layer, 4),
    "GRU": lambda layer: _recurrent(layer, 3),
    "SimpleRNN": lambda layer: _recurrent(layer, 1),
    "MultiHeadAttention": _attention,
}
#: Layers that do no matrix products worth counting.
FREE = {
    "InputLayer",
    "Flatten",
    "Reshape",
    "MaxPooling1D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "LayerNormalization",
    "BatchNormalization",
    "Dropout",
    "Activation",
    "Add",
    "Concatenate",
    "ReLU",
    "Softmax",
    "Rescaling",
    "Normalization",
}


def forward_flops(model) -> tuple[float | None, list[str]]:
    """Forward FLOPs for one sample, and the names of layer kinds counted as zero."""
    total, unknown = 0.0, []
    for layer in model.layers:
        kind = type(layer).__name__
        try:
            if kind in COUNTERS:
                total += COUNTERS[kind](layer)
            elif hasattr(layer, "layers") and layer.layers:  # a nested model
                inner, missing = forward_flops(layer)
                if inner is None:
                    return None, missing
                total += inner
                unknown += missing
            elif kind not in FREE and kind not in unknown and layer.weights:
                unknown.append(kind)
        except (AttributeError, KeyError, ValueError, TypeError):
            return None, [kind]  # shapes unknown: a subclassed model, or a layer used twice
    return total, unknown


def step_flops(forward: float | None, mode: str) -> float | None:
    if forward is None:
        return None
    return forward * (TRAIN_FACTOR if mode == "fit" else 1)
