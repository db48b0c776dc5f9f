"""TensorFlow: ``tf.GradientTape`` under ``tf.function``, as in the seed's loop."""

from __future__ import annotations

import os

import tensorflow as tf

from backendlab.backends import check_device_count
from backendlab.errors import UsageError


def devices() -> list[str]:
    return [d.name for d in tf.config.list_logical_devices()]


def sync(tree) -> None:
    for leaf in tf.nest.flatten(tree):
        if hasattr(leaf, "numpy"):
            leaf.numpy()


def refuses_nan(exc: BaseException) -> bool:
    return False  # TensorFlow computes with NaN like any other number


def check_devices(devices: int) -> None:
    check_device_count(devices, len(tf.config.list_physical_devices("GPU")))


def data_parallel(devices: int):
    """``tf.distribute.MirroredStrategy`` over ``devices`` GPUs, or logical CPU devices on a CPU-only machine;
    ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes several hosts.

    Returns the strategy's scope: the model must be built and compiled inside it.
    """
    if "TF_CONFIG" in os.environ:
        return tf.distribute.MultiWorkerMirroredStrategy().scope()
    gpus = tf.config.list_physical_devices("GPU")
    check_devices(devices)
    if not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
        except RuntimeError:
            pass  # TensorFlow already started; use the devices it has
    names = [d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU")]
    if len(names) < devices:
        raise UsageError(
            f"asked for {devices} devices but TensorFlow sees {len(names)} ({', '.join(names)}); "
            "logical CPU devices can only be made before TensorFlow starts"
        )
    return tf.distribute.MirroredStrategy(names[:devices]).scope()


def make_train_step(model, loss_fn, optimizer):
    # Build the optimizer's slots eagerly: tf.function must not create variables.
    optimizer.build(model.trainable_variables)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = loss_fn(y, y_pred)
            if model.losses:  # regularization, as fit adds it
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        return loss, y_pred

    return step
