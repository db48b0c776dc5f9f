"""JAX: ``stateless_call`` + ``jax.value_and_grad`` + ``optimizer.stateless_apply`` under ``jax.jit``."""

from __future__ import annotations

import contextlib

import jax

from backendlab.backends import check_device_count
from backendlab.errors import UsageError


def devices() -> list[str]:
    return [f"{d.platform}:{d.id}" for d in jax.devices()]


def sync(tree) -> None:
    jax.block_until_ready(tree)


def refuses_nan(exc: BaseException) -> bool:
    return False  # JAX computes with NaN like any other number


def check_devices(devices: int) -> None:
    accelerators = [d for d in jax.devices() if d.platform != "cpu"]
    check_device_count(devices, len(accelerators))


def data_parallel(devices: int):
    """Keras's own distribution API: DataParallel over a 1-D DeviceMesh of ``devices`` devices."""
    import keras

    check_devices(devices)
    found = keras.distribution.list_devices()
    if len(found) < devices:
        raise UsageError(
            f"asked for {devices} devices but JAX sees {len(found)} ({', '.join(found)}): on a CPU, set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before JAX starts "
            "(backendlab's command line does)"
        )
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=found[:devices]))
    return contextlib.nullcontext()


def make_train_step(model, loss_fn, optimizer):
    optimizer.build(model.trainable_variables)

    def compute_loss(trainable, non_trainable, x, y):
        y_pred, non_trainable, losses = model.stateless_call(
            trainable, non_trainable, x, training=True, return_losses=True
        )
        loss = loss_fn(y, y_pred)
        for extra in losses:  # regularization, as fit adds it
            loss = loss + extra
        return loss, (y_pred, non_trainable)

    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

    @jax.jit
    def jitted(trainable, non_trainable, opt_vars, x, y):
        (loss, (y_pred, non_trainable)), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return loss, y_pred, trainable, non_trainable, opt_vars

    def step(x, y):
        loss, y_pred, trainable, non_trainable, opt_vars = jitted(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables],
            x,
            y,
        )
        # Write the new state back into the Keras variables, so predict, evaluate
        # and save see the trained weights and the optimizer carries its state over.
        for variables, values in (
            (model.trainable_variables, trainable),
            (model.non_trainable_variables, non_trainable),
            (optimizer.variables, opt_vars),
        ):
            for variable, value in zip(variables, values):
                variable.assign(value)
        return loss, y_pred

    return step
