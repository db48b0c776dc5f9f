"""The benchmark models' shapes, in one place: the Keras models and the native loops read them here.

``mlp`` is the 784-256-256-10 MLP of the README's orientation numbers; ``cnn`` a small
two-convolution network on 28x28x1 images. Both have native twins (same layers, same
Adam, same softmax cross-entropy on logits). ``rnn`` and ``transformer`` are the zoo's
builders (``backendlab.models``) on synthetic sequences, Keras only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEARNING_RATE = 1e-3  # Adam, Keras's and the frameworks' default betas and epsilon 1e-7
ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


@dataclass(frozen=True)
class BenchShape:
    name: str
    input_shape: tuple[int, ...]
    classes: int
    hidden: tuple[int, ...] = ()  # Dense widths (mlp) or Conv2D filters (cnn)
    kernel: int = 3
    native: bool = False  # whether native PyTorch/JAX/TensorFlow twins exist
    dropout: float = 0.0  # a Dropout of this rate after each pooling and before the head (cnn_dropout)
    description: str = ""


SHAPES: dict[str, BenchShape] = {
    s.name: s
    for s in (
        BenchShape("mlp", (784,), 10, (256, 256), native=True, description="Dense 784-256-256-10, relu, logits"),
        BenchShape(
            "cnn",
            (28, 28, 1),
            10,
            (16, 32),
            native=True,
            description="Conv3x3(16)-relu-MaxPool2-Conv3x3(32)-relu-MaxPool2-Flatten-Dense(10), valid padding",
        ),
        BenchShape(
            "cnn_dropout",
            (28, 28, 1),
            10,
            (16, 32),
            dropout=0.25,
            description="cnn with Dropout(0.25) after each MaxPool2 and after Flatten: what --random costs",
        ),
        BenchShape("rnn", (32, 16), 10, description="zoo rnn: LSTM(32)-Dense(10) softmax, 32 steps x 16 features"),
        BenchShape(
            "transformer",
            (32, 16),
            10,
            description="zoo transformer: one encoder block, width 32, 2 heads, 32 steps x 16 features",
        ),
    )
}


def synthetic_data(input_shape: tuple[int, ...], classes: int, samples: int, seed: int = 0):
    """Seeded float32 inputs and int32 labels of fixed shape; the values do not matter for speed."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, *input_shape)).astype("float32")
    y = rng.integers(0, max(classes, 2), size=samples).astype("int32")
    return x, y
