"""The seed's low-level training loop, written once, run with the active backend's own autodiff.

    step = TrainStep(model, "categorical_crossentropy", keras.optimizers.Adam())
    for x_batch, y_batch in batches:
        logs = step(x_batch, y_batch)     # {"loss": ..., and any metrics}; step(x, y, w) weighs the samples

Underneath: ``tf.GradientTape`` under ``tf.function`` on TensorFlow, ``stateless_call`` +
``jax.value_and_grad`` + ``optimizer.stateless_apply`` under ``jax.jit`` on JAX, and
``backward()`` + ``optimizer.apply`` under ``no_grad`` on PyTorch (``backendlab/_impl``).
The model's variables and the optimizer's slots are real Keras state, so ``predict``,
``evaluate``, ``save`` and a later ``fit`` all see the trained weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from backendlab.backends import ensure_backend, impl
from backendlab.errors import UsageError, one_line


def resolve_loss(loss: Any) -> Callable:
    """A function ``(y_true, y_pred) -> scalar`` from a Keras loss name, object, function, or dict of them.

    A plain function (e.g. one written with ``keras.ops``) may return one value per
    sample; it is averaged over the batch (Keras's ``sum_over_batch_size``), as compile does.
    The function takes ``sample_weight`` as a third argument, as a compiled loss does: one array
    for every output, or a dict keyed like the outputs.
    """
    import keras

    if isinstance(loss, dict):
        parts = {name: resolve_loss(fn) for name, fn in loss.items()}

        def total(y_true, y_pred, sample_weight=None):
            def weights(name):
                return sample_weight[name] if isinstance(sample_weight, dict) else sample_weight

            return sum(fn(y_true[name], y_pred[name], weights(name)) for name, fn in parts.items())

        return total
    if isinstance(loss, str):
        try:
            loss = keras.losses.get(loss)
        except ValueError:
            raise UsageError(f"unknown loss {loss!r}: use a keras.losses name or a function (y_true, y_pred)") from None
    if isinstance(loss, keras.losses.Loss):
        return loss
    if not callable(loss):
        raise UsageError(f"loss must be callable (y_true, y_pred) -> loss, got {type(loss).__name__}")
    return _FunctionLoss(loss)


@functools.cache
def _function_loss_class():
    import keras

    class FunctionLoss(keras.losses.Loss):
        """A per-sample loss function as a Keras Loss: averaged over the batch, as compile does.

        Labels of shape (batch,) meet outputs of shape (batch, 1) the way compile meets them.
        """

        def __init__(self, fn):
            super().__init__(name=getattr(fn, "__name__", "loss"))
            self.fn = fn

        def call(self, y_true, y_pred):
            if len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
                y_true = keras.ops.expand_dims(y_true, -1)
            return self.fn(y_true, y_pred)

    return FunctionLoss


def _FunctionLoss(fn):
    return _function_loss_class()(fn)


def _check_built(model) -> None:
    if not model.built or not model.trainable_variables:
        raise UsageError(
            f"model {model.name!r} has no weights yet: build it first (give it a keras.Input, "
            "call model.build(input_shape), or call it once on a batch)"
        )


class TrainStep:
    """One optimizer step per call on a batch; returns ``{"loss": float, <metric>: float}``.

    ``metrics`` are Keras metric objects or names, computed on that batch alone.
    Calling it again continues from the current weights and optimizer state, which
    is what incremental learning needs.

    ``jit_compile``: None (the default) compiles as each backend usually does (``jax.jit``,
    ``tf.function``, eager PyTorch); True adds XLA on TensorFlow and ``torch.compile`` on PyTorch;
    False runs JAX op by op. ``random``: ``"portable"`` (the default) draws Dropout's masks and every
    other ``keras.random`` draw from backendlab's portable stream, the same on every backend
    (:mod:`backendlab.training.randomness`); ``"backend"`` keeps each backend's own generator.
    ``run`` returns tensors without waiting for them: a loop that calls it and reads the loss only
    now and then never stops the device once per step.
    """

    def __init__(self, model, loss, optimizer, metrics=(), jit_compile=None, random="portable"):
        import keras

        from backendlab.training.randomness import MODES

        ensure_backend()
        _check_built(model)
        if random not in MODES:
            raise UsageError(f"random must be 'portable' or 'backend', got {random!r}")
        if isinstance(optimizer, str):
            optimizer = keras.optimizers.get(optimizer)
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = resolve_loss(loss)
        self.metrics = [keras.metrics.get(m) if isinstance(m, str) else m for m in metrics]
        self.jit_compile = jit_compile
        self.random = random
        self._step = impl().make_train_step(model, self.loss_fn, optimizer, jit_compile)

    def run(self, x, y, sample_weight=None, shares: list[int] | None = None):
        """One step; returns ``(x, y, sample_weight, loss, y_pred)`` as backend tensors, for callers that
        need the predictions.

        ``sample_weight`` weighs each sample's loss as ``fit`` does (Keras's ``sum_over_batch_size``:
        the weighted losses summed, divided by the batch's samples). ``shares``: ``x``, ``y`` and
        ``sample_weight`` are this process's share of a global batch split in these parts
        (``--processes``), and ``y_pred`` is the whole global batch's.
        """
        import keras

        x, y, sample_weight = (
            None if t is None else keras.tree.map_structure(keras.ops.convert_to_tensor, t)
            for t in (x, y, sample_weight)
        )
        try:
            given = () if shares is None else (shares,)  # torch's --processes alone gives shares
            with self._randomness():
                loss, y_pred = self._step(x, y, sample_weight, *given)
        except (ValueError, TypeError) as exc:
            raise UsageError(
                f"model {self.model.name!r} failed on a batch of shape {_shapes(x)} -> {_shapes(y)}: {one_line(exc)}"
            ) from exc
        return x, y, sample_weight, loss, y_pred

    def run_batches(self, batches) -> list:
        """One step per ``(x, y)`` or ``(x, y, sample_weight)`` of ``batches`` (tensors already on the
        device, or arrays); returns the losses as tensors, read back by nobody: the loop never waits
        for the device."""
        import keras

        batches = [
            tuple(keras.tree.map_structure(keras.ops.convert_to_tensor, part) for part in batch) for batch in batches
        ]
        with self._randomness():
            return self._step.run_many(batches)

    def _randomness(self):
        from backendlab.training import randomness

        return randomness.use(self.random)  # a replica's rows counted from its share's start (backendlab/_impl)

    def __call__(self, x, y, sample_weight=None) -> dict[str, float]:
        import keras

        x, y, sample_weight, loss, y_pred = self.run(x, y, sample_weight)
        logs = {"loss": float(keras.ops.convert_to_numpy(loss))}
        for metric in self.metrics:
            metric.reset_state()
            metric.update_state(y, y_pred, sample_weight=sample_weight)
            logs[metric.name] = float(keras.ops.convert_to_numpy(metric.result()))
        return logs


def _shapes(tree) -> Any:
    import keras

    return keras.tree.map_structure(lambda a: tuple(a.shape), tree)
