"""TensorFlow: ``tf.Variable`` weights, ``tf.GradientTape``, Adam written out, the step under ``tf.function``."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from backendlab._impl.tensorflow import devices, sync, threads  # noqa: F401  (one definition per backend)
from backendlab.bench.shapes import ADAM, LEARNING_RATE, BenchShape

COMPILER = "tf.function"


def set_threads(n: int, inter: int | None = None) -> None:
    """Before TensorFlow runs its first op (it raises RuntimeError after)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        if inter is not None:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as exc:
        raise ValueError(f"TensorFlow's thread counts are fixed once it has started: {exc}") from None


def matmul_gflops(n: int, repeats: int = 10) -> tuple[float, str]:
    gen = tf.random.Generator.from_seed(0)
    a, b = gen.normal((n, n)), gen.normal((n, n))
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()  # .numpy() waits for the result (and copies it: a small cost)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9, a.device or devices()[0]


def device_peak_mb() -> float | None:
    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def _glorot(rng: np.random.Generator, shape, fan_in: int, fan_out: int) -> tf.Variable:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return tf.Variable(rng.uniform(-limit, limit, size=shape).astype("float32"))


class Net(tf.Module):
    def __init__(self, weights: list[tf.Variable], apply):
        super().__init__()
        self.weights, self.apply = weights, apply


def _dense(rng, n_in: int, n_out: int) -> list[tf.Variable]:
    return [_glorot(rng, (n_in, n_out), n_in, n_out), tf.Variable(tf.zeros((n_out,)))]


def build_mlp(shape: BenchShape, seed: int = 0) -> Net:
    rng = np.random.default_rng(seed)
    widths = (shape.input_shape[-1], *shape.hidden, shape.classes)
    weights = [v for a, b in zip(widths, widths[1:]) for v in _dense(rng, a, b)]

    def apply(x):
        for w, b in zip(weights[0:-2:2], weights[1:-2:2]):
            x = tf.nn.relu(tf.matmul(x, w) + b)
        return tf.matmul(x, weights[-2]) + weights[-1]

    return Net(weights, apply)


def build_cnn(shape: BenchShape, seed: int = 0) -> Net:
    rng = np.random.default_rng(seed)
    height, width, channels = shape.input_shape
    k = shape.kernel
    weights = []
    for filters in shape.hidden:
        weights += [
            _glorot(rng, (k, k, channels, filters), k * k * channels, k * k * filters),
            tf.Variable(tf.zeros((filters,))),
        ]
        channels, height, width = filters, (height - k + 1) // 2, (width - k + 1) // 2
    weights += _dense(rng, channels * height * width, shape.classes)

    def apply(x):
        for w, b in zip(weights[0:-2:2], weights[1:-2:2]):
            x = tf.nn.relu(tf.nn.conv2d(x, w, 1, "VALID") + b)
            x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = tf.reshape(x, (tf.shape(x)[0], -1))
        return tf.matmul(x, weights[-2]) + weights[-1]

    return Net(weights, apply)


def count_params(net: Net) -> int:
    return sum(int(np.prod(w.shape)) for w in net.weights)


def as_batches(x, y, batch_size: int) -> list:
    xd, yd = tf.constant(x), tf.constant(y)
    return [(xd[i : i + batch_size], yd[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def make_train_step(net: Net):
    b1, b2, eps = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]
    m = [tf.Variable(tf.zeros_like(w)) for w in net.weights]
    v = [tf.Variable(tf.zeros_like(w)) for w in net.weights]
    t = tf.Variable(0.0)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = net.apply(x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, net.weights)
        t.assign_add(1.0)
        lr = LEARNING_RATE * tf.sqrt(1 - b2**t) / (1 - b1**t)
        for w, g, mw, vw in zip(net.weights, grads, m, v):
            mw.assign(b1 * mw + (1 - b1) * g)
            vw.assign(b2 * vw + (1 - b2) * g * g)
            w.assign_sub(lr * mw / (tf.sqrt(vw) + eps))
        return loss

    return step


def make_predict_step(net: Net):
    return tf.function(net.apply)
