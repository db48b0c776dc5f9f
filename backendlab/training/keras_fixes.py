"""Where Keras imports TensorFlow into a JAX or PyTorch process that does not need it.

Keras's serializer (``get_config``, saving) asks ``isinstance(obj, tf.TensorShape)`` and the like
behind ``tf.available``, which imports TensorFlow when it is installed: seconds of CPU and half a
gigabyte in a JAX or PyTorch process that never uses it, and its thread pools slow the other
framework down. While TensorFlow is not imported nothing can be an instance of its types, so
:func:`avoid_needless_tensorflow` makes the serializer's ``tf.available`` mean "installed and
already imported". Nothing else changes: once anything imports TensorFlow (a tf.data pipeline,
the TensorFlow backend) the checks run as Keras wrote them. :func:`set_random_seed` seeds as
``keras.utils.set_random_seed`` does, without importing TensorFlow to seed it. Both run inside a
process with ``KERAS_BACKEND`` set.

Measured on the seed MLP under PyTorch, in a virtualenv with every backend: ``fit`` for 2 epochs
took 1.9 s with TensorFlow imported and seeded, 0.26 s without.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class _ImportedTensorflow:
    """Keras's lazy ``tensorflow`` module, but ``available`` only once TensorFlow is imported."""

    def __init__(self, lazy):
        self._lazy = lazy

    @property
    def available(self) -> bool:
        return "tensorflow" in sys.modules and self._lazy.available

    def __getattr__(self, name):
        return getattr(self._lazy, name)


def avoid_needless_tensorflow() -> None:
    """Stop Keras's serializer from importing TensorFlow just to rule out its types; idempotent."""
    try:
        from keras.src.saving import serialization_lib
    except ImportError:  # a Keras laid out otherwise: leave it as it is
        return
    lazy = getattr(serialization_lib, "tf", None)
    # Asked of the class: asking the lazy module itself for ``available`` would import TensorFlow.
    if isinstance(getattr(type(lazy), "available", None), property):
        serialization_lib.tf = _ImportedTensorflow(lazy)


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed``, without importing TensorFlow into a JAX or PyTorch process to seed it.

    Keras seeds TensorFlow whenever it is installed (for tf.data pipelines), and importing it
    costs seconds and half a gigabyte in a process that never uses it. Where TensorFlow is not
    loaded yet, Keras is told it is unavailable for this one call; everything else it seeds
    (Python, NumPy, torch, its own global seed generator) is seeded as usual.
    """
    import keras

    with tensorflow_left_alone():
        keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def tensorflow_left_alone() -> Iterator[None]:
    """While the body runs, Keras's ``tf.available`` is False in a JAX or PyTorch process that has not
    imported TensorFlow, so Keras seeds without it: around ``keras.utils.set_random_seed`` and what calls
    it (``keras.distribution.initialize`` on JAX seeds every process alike). A no-op on TensorFlow."""
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        yield
        return
    try:
        from keras.src.utils.module_utils import tensorflow as lazy_tf

        known = lazy_tf._available
    except (ImportError, AttributeError):  # a Keras laid out otherwise: let it do as it does
        yield
        return
    lazy_tf._available = False
    try:
        yield
    finally:
        lazy_tf._available = known  # a later real use of TensorFlow still imports it
