"""Keras's ``TerminateOnNaN`` for both of backendlab's loops, saying what went non-finite and when.

After every step the watch looks at what that step logged: the loss first (the total, then
each output's own), then the metrics. After every epoch it looks at the weights: reading
them every step would add a device-to-host copy of the whole model to each timed step.
The first NaN or infinity found is kept as a :class:`~backendlab.results.NonFinite`, and
the loop stops there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from backendlab.results import NonFinite


def nonfinite_word(value: Any) -> str | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for the first non-finite number in ``value``; None if all are finite."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # not numbers: nothing to check
        return None
    bad = array[~np.isfinite(array)]
    if bad.size == 0:
        return None
    first = bad.flat[0]
    return "nan" if np.isnan(first) else ("inf" if first > 0 else "-inf")


def _is_loss(name: str) -> bool:
    return name == "loss" or name.endswith("_loss")


class NonFiniteWatch:
    """Holds the first NaN or infinity of a run in ``found``; each check returns True once there is one."""

    def __init__(self) -> None:
        self.found: NonFinite | None = None

    def check_logs(self, step: int, logs: Mapping[str, Any]) -> bool:
        """One step's logs (``{"loss": ..., "amount_loss": ..., "amount_mae": ...}``), losses before metrics."""
        if self.found is None:
            names = sorted(logs, key=lambda name: not _is_loss(name))  # stable: the logged order otherwise
            bad = [(name, word) for name in names if (word := nonfinite_word(logs[name]))]
            if bad:
                name, word = bad[0]
                if name == "loss":  # name the output whose loss went, where the model logs one per output
                    name = next((n for n, _ in bad if n != "loss" and _is_loss(n)), name)
                self.found = NonFinite(step, "loss" if _is_loss(name) else "metric", name, word)
        return self.found is not None

    def check_error(self, step: int, exc: BaseException) -> bool:
        """An error raised in ``step``: where the framework refuses a NaN others compute, it is a NaN loss."""
        from backendlab.backends import impl

        if self.found is None and impl().refuses_nan(exc):
            self.found = NonFinite(step, "loss", "loss", "nan")
        return self.found is not None

    def check_weights(self, step: int, model) -> bool:
        """The model's weights (trainable and not), after ``step``, the last step of an epoch."""
        import keras

        if self.found is None:
            for variable in model.weights:
                word = nonfinite_word(keras.ops.convert_to_numpy(variable))
                if word:
                    self.found = NonFinite(step, "weights", variable.path, word)
                    break
        return self.found is not None
