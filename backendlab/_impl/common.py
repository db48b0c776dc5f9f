"""What every backend's module shares, written once: the parity helper's objective and one way to time work.

Imports no framework at import (Keras inside the functions): the backend modules import it, and
so may code that runs before the backend is chosen (:mod:`backendlab.tune.worker`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def differentiable(x) -> bool:
    """Whether a tensor has a gradient: float inputs do, token ids and masks do not."""
    import keras

    return keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype))


def weighted_sum(outputs, cotangent):
    """``sum(outputs * cotangent)`` over the float outputs (``cotangent`` holds None for the others)."""
    import keras

    terms = [
        keras.ops.sum(keras.ops.cast(out, "float32") * keras.ops.convert_to_tensor(c))
        for out, c in zip(keras.tree.flatten(outputs), cotangent)
        if c is not None
    ]
    return sum(terms[1:], terms[0])


def median_ms(fn: Callable, sync: Callable, repeats: int) -> float:
    """Milliseconds ``fn()`` takes, median of ``repeats`` after one warm-up; ``sync(result)`` waits for the device."""
    sync(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
