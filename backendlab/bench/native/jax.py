"""JAX: pure functions on a parameter pytree, Adam written out, the whole step under ``jax.jit``."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from backendlab._impl.jax import _SINGLE_THREAD_FLAGS, devices, sync, threads  # noqa: F401  (one definition each)
from backendlab.bench.shapes import ADAM, LEARNING_RATE, BenchShape

COMPILER = "jax.jit"


def set_threads(n: int, inter: int | None = None) -> None:
    """One intra-op thread, set before JAX starts its CPU client (the flag is read then); inter-op has no knob."""
    import os

    from jax._src import xla_bridge

    if n != 1:
        raise ValueError(f"JAX's CPU client uses every core or one (XLA_FLAGS); {n} intra-op threads do not apply")
    if xla_bridge.backends_are_initialized():
        raise ValueError("JAX's CPU thread count is fixed once it has started; set threads in a fresh process")
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_SINGLE_THREAD_FLAGS}".strip()


def matmul_gflops(n: int, repeats: int = 10) -> tuple[float, str]:
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9, devices()[0]


def device_peak_mb() -> float | None:
    device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**20 if peak is not None else None


def _glorot(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> jnp.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jnp.asarray(rng.uniform(-limit, limit, size=shape).astype("float32"))


def _dense_params(rng, n_in: int, n_out: int) -> dict:
    return {"w": _glorot(rng, (n_in, n_out), n_in, n_out), "b": jnp.zeros((n_out,), jnp.float32)}


class Net:
    """Parameters and the forward function that uses them."""

    def __init__(self, params, apply):
        self.params, self.apply = params, apply


def build_mlp(shape: BenchShape, seed: int = 0) -> Net:
    rng = np.random.default_rng(seed)
    widths = (shape.input_shape[-1], *shape.hidden, shape.classes)
    params = [_dense_params(rng, a, b) for a, b in zip(widths, widths[1:])]

    def apply(params, x):
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        return x @ params[-1]["w"] + params[-1]["b"]

    return Net(params, apply)


def build_cnn(shape: BenchShape, seed: int = 0) -> Net:
    rng = np.random.default_rng(seed)
    height, width, channels = shape.input_shape
    k = shape.kernel
    convs = []
    for filters in shape.hidden:
        convs.append(
            {
                "w": _glorot(rng, (k, k, channels, filters), k * k * channels, k * k * filters),
                "b": jnp.zeros((filters,), jnp.float32),
            }
        )
        channels, height, width = filters, (height - k + 1) // 2, (width - k + 1) // 2
    params = {"convs": convs, "dense": _dense_params(rng, channels * height * width, shape.classes)}

    def apply(params, x):
        for conv in params["convs"]:
            x = jax.lax.conv_general_dilated(x, conv["w"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            x = jax.nn.relu(x + conv["b"])
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        x = x.reshape(x.shape[0], -1)
        return x @ params["dense"]["w"] + params["dense"]["b"]

    return Net(params, apply)


def count_params(net: Net) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(net.params))


def as_batches(x, y, batch_size: int) -> list:
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    return [(xd[i : i + batch_size], yd[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def _cross_entropy(logits, labels):
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def make_train_step(net: Net):
    b1, b2, eps = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]
    zeros = jax.tree_util.tree_map(jnp.zeros_like, net.params)
    state = {"params": net.params, "m": zeros, "v": zeros, "t": jnp.zeros((), jnp.float32)}

    def loss_fn(params, x, y):
        return _cross_entropy(net.apply(params, x), y)

    @jax.jit
    def jitted(state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], x, y)
        t = state["t"] + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
        lr = LEARNING_RATE * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + eps), state["params"], m, v)
        return {"params": params, "m": m, "v": v, "t": t}, loss

    def step(x, y):
        nonlocal state
        state, loss = jitted(state, x, y)
        return loss

    return step


def make_predict_step(net: Net):
    apply = jax.jit(net.apply)
    return lambda x: apply(net.params, x)
