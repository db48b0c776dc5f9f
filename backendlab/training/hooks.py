"""What backendlab adds to ``fit``: each batch's own loss in its logs, and the epoch's means over real samples."""

from __future__ import annotations

import functools
from collections import defaultdict

import numpy as np

#: The log key under which fit reports each batch's own loss (see :func:`record_step_losses`).
STEP_LOSS = "_backendlab_step_loss"


def record_step_losses(model) -> bool:
    """Make ``fit`` log each batch's own loss beside the epoch's running mean; False where it cannot.

    Keras logs only the running mean of the epoch's losses, kept in float32: recovering a batch's
    loss from it costs about k * 6e-8 relative at step k. So the model's loss tracker (the one
    ``Mean`` every backend's ``train_step`` updates with the batch's loss) is replaced by one that
    also keeps the last value; its variables are metric variables, so JAX's stateless step carries
    them too. Under a data-parallel strategy the tracker's replicas would each hold their share, so
    there backendlab keeps recovering losses from the running mean.
    """
    import keras

    tracker = getattr(model, "_loss_tracker", None)  # Keras 3's private name; absent: fall back
    if isinstance(tracker, _step_loss_tracker_class()):
        return True  # installed by an earlier run on this model
    if type(tracker) is not keras.metrics.Mean:
        return False  # absent, or a tracker of the user's own: left as it is
    # Set past Keras's attribute tracking, which refuses new state on a built model; Keras reads
    # the tracker from this attribute alone (``Trainer.metrics``), so nothing else must know of it.
    object.__setattr__(model, "_loss_tracker", _step_loss_tracker_class()(name=tracker.name))
    return True


@functools.cache
def _step_loss_tracker_class():
    import keras

    class StepLossTracker(keras.metrics.Mean):
        def __init__(self, name="loss", dtype=None):
            super().__init__(name=name, dtype=dtype)
            self.last = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="last")

        def update_state(self, values, sample_weight=None):
            super().update_state(values, sample_weight)
            self.last.assign(keras.ops.cast(keras.ops.mean(values), self.dtype))

        def reset_state(self):
            super().reset_state()
            self.last.assign(0)

        def result(self):
            return {self.name: super().result(), STEP_LOSS: keras.ops.cast(self.last, self.dtype)}

    return StepLossTracker


@functools.cache
def sample_means_class():
    """The ``SampleMeans`` callback class, made when first asked for: it subclasses Keras's ``Callback``."""
    import keras

    class SampleMeans(keras.callbacks.Callback):
        """The epoch's loss trackers as means over its real samples, as fit logs the loss on one device.

        Keras's ``Mean`` trackers (the loss, each output's loss, a model's own) weigh a batch by
        its size, padding included (:func:`pad_last_batch`), or, where its shape is not known
        when traced, count it once per replica (TensorFlow's per-output losses), which a last,
        partial batch makes a different mean. Each batch's value is recovered from the running
        means and re-weighed by its real samples in ``means``; a tracker that counted exactly
        those is left as Keras logged it.

        On a padded batch fit gives the loss's sample weights to the compiled metrics too, where
        padded/real would count the batch as padded-size: during fit they see 1 per real sample.
        """

        def __init__(self, real: list[int], padded: list[int], replicas: int):
            super().__init__()
            self.real, self.padded = np.array(real, dtype=float), np.array(padded, dtype=float)
            self.replicas = replicas
            self.means: dict[str, float] = {}

        def on_train_begin(self, logs=None):
            self.own = None
            if np.array_equal(self.real, self.padded):
                return
            model = self.model
            self.own = (model.__dict__.get("compute_metrics"),)
            original = model.compute_metrics

            def compute_metrics(x, y, y_pred, sample_weight=None):
                if sample_weight is not None:
                    sample_weight = keras.tree.map_structure(
                        lambda w: keras.ops.cast(keras.ops.greater(w, 0), w.dtype), sample_weight
                    )
                return original(x, y, y_pred, sample_weight)

            model.compute_metrics = compute_metrics

        def on_train_end(self, logs=None):
            if self.own is None:
                return
            if self.own[0] is None:
                del self.model.compute_metrics  # back to the class's
            else:
                self.model.compute_metrics = self.own[0]

        def on_epoch_begin(self, epoch, logs=None):
            self.runs: dict[str, list[float]] = defaultdict(list)

        def on_train_batch_end(self, batch, logs=None):
            for key, value in (logs or {}).items():
                self.runs[key].append(float(value))

        def on_epoch_end(self, epoch, logs=None):
            self.means = _sample_means(self.model, self.runs, logs, self.real, self.padded, self.replicas)

    return SampleMeans


def _sample_means(model, runs: dict, logs, real: np.ndarray, padded: np.ndarray, replicas: int) -> dict[str, float]:
    """Each ``Mean`` tracker of ``model`` that did not count ``real``'s samples, as the mean over them:
    its batches' values recovered from their running means ``runs`` (see :func:`sample_means_class`)."""
    import keras

    means = {}
    for tracker in model.metrics:  # the loss tracker, the per-output ones, a model's own
        run = runs.get(tracker.name, [])
        if not run or tracker.name not in (logs or {}) or not isinstance(tracker, keras.metrics.Mean):
            continue
        real_n, padded_n = real[: len(run)], padded[: len(run)]
        count = float(keras.ops.convert_to_numpy(tracker.count))
        if count == real_n.sum():
            continue  # it counted the real samples
        if count == padded_n.sum():
            counted = padded_n
        elif count in (len(run), replicas * len(run)):
            counted = np.ones(len(run))  # once per batch, or once per replica and batch
        else:
            continue  # counted in a way not known here
        values = np.diff(np.array(run) * np.cumsum(counted), prepend=0.0) / counted
        means[tracker.name] = float(values @ real_n / real_n.sum())
    return means


@functools.cache
def evaluation_means_class():
    """The ``EvaluationMeans`` callback class: :func:`sample_means_class`'s means for ``evaluate``.

    TensorFlow's per-output losses (``a_loss``) count each batch once where its size is unknown
    when traced, so a last, smaller test batch weighed as much as a full one: 0.3478 against
    0.3583 on JAX and PyTorch for a two-output model on breast cancer's 114 test samples (batches
    of 32), while the total loss, counted by samples, agreed.
    """
    import keras

    class EvaluationMeans(keras.callbacks.Callback):
        def __init__(self, sizes: list[int], replicas: int):
            super().__init__()
            self.sizes, self.replicas = np.array(sizes, dtype=float), replicas
            self.means: dict[str, float] = {}

        def on_test_begin(self, logs=None):
            self.runs: dict[str, list[float]] = defaultdict(list)

        def on_test_batch_end(self, batch, logs=None):
            for key, value in (logs or {}).items():
                self.runs[key].append(float(value))

        def on_test_end(self, logs=None):
            self.means = _sample_means(self.model, self.runs, logs, self.sizes, self.sizes, self.replicas)

    return EvaluationMeans
