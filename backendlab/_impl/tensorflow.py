"""TensorFlow: ``tf.GradientTape`` under ``tf.function``, as in the seed's loop."""

from __future__ import annotations

import tensorflow as tf


def devices() -> list[str]:
    return [d.name for d in tf.config.list_logical_devices()]


def sync(tree) -> None:
    for leaf in tf.nest.flatten(tree):
        if hasattr(leaf, "numpy"):
            leaf.numpy()


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
