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


def join_processes(processes: int):
    """``--processes N``: join the others through ``keras.distribution.initialize`` (``jax.distributed``, with
    gloo for the collectives between CPUs), then DataParallel over every process's devices.

    ``auto_shard_dataset=False``: each process feeds ``fit`` only its own share of every global batch,
    and Keras makes the global arrays from them (``jax.make_array_from_process_local_data``).
    """
    import keras

    from backendlab.launch import process_place

    rank, addresses = process_place(processes)
    if not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        keras.distribution.initialize(addresses[0], processes, rank)
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=keras.distribution.list_devices(), auto_shard_dataset=False)
    )
    return contextlib.nullcontext()


def process_batches(model, x, y, sample_weight, batch_size: int) -> dict:
    """``fit``'s data: this process's own rows, in local batches of ``batch_size`` (global / N)."""
    return {"x": x, "y": y, "sample_weight": sample_weight, "batch_size": batch_size}


def gather_shares(tree, shares: list[int]):
    """The global batch from the shares: JAX's --processes trains with fit, which gathers them itself."""
    return tree


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


def fit_gradients(model, x, y):
    """One batch's loss and gradients as ``fit``'s jitted ``train_step`` computes them, before the update.

    The trainer's own ``compute_loss_and_updates`` under ``jax.value_and_grad``; the forward
    pass's non-trainable updates (BatchNorm statistics, seed states) are written to the model.
    """
    variables = [model.trainable_variables, model.non_trainable_variables, model.metrics_variables]
    grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)

    @jax.jit
    def compute(trainable, non_trainable, metrics, optimizer_variables, x, y):
        return grad_fn(
            trainable, non_trainable, metrics, x, y, None, training=True, optimizer_variables=optimizer_variables
        )

    (_, (loss, _, non_trainable, _)), grads = compute(
        *([v.value for v in group] for group in variables), [v.value for v in model.optimizer.variables], x, y
    )
    for variable, value in zip(model.non_trainable_variables, non_trainable):
        variable.assign(value)
    return loss, grads


def apply_gradients(optimizer, grads, variables) -> None:
    """``optimizer.stateless_apply`` under ``jax.jit``, as ``fit``'s step applies it, written back to the variables."""
    new_variables, new_slots = jax.jit(optimizer.stateless_apply)(
        [v.value for v in optimizer.variables], grads, [v.value for v in variables]
    )
    for group, values in ((variables, new_variables), (optimizer.variables, new_slots)):
        for variable, value in zip(group, values):
            variable.assign(value)


def input_and_weight_gradients(layer, inputs, cotangent, training):
    """The gradients of ``sum(outputs * cotangent)`` by ``jax.grad``, the layer called in a ``StatelessScope``.

    ``(input_grads, weight_grads)``: one per leaf of ``inputs`` (None where it is not a float),
    one per ``layer.trainable_variables``. The layer is called as users call it (``layer(x)``, not
    ``stateless_call``, which skips ``__call__``'s casting and ``training`` handling); the call's
    non-trainable updates (BatchNorm's statistics in training mode) are written back, as on the
    backends that update in place.
    """
    import keras

    from backendlab.layer_check import differentiable, weighted_sum

    leaves = keras.tree.flatten(inputs)
    wrt = [i for i, x in enumerate(leaves) if differentiable(x)]
    non_trainable = [(v, v.value) for v in layer.non_trainable_variables]

    def objective(trainable, floats):
        values = list(leaves)
        for i, x in zip(wrt, floats):
            values[i] = x
        mapping = [*zip(layer.trainable_variables, trainable), *non_trainable]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = layer(keras.tree.pack_sequence_as(inputs, values), training=training)
        return weighted_sum(outputs, cotangent), [scope.get_current_value(v) for v, _ in non_trainable]

    (weight_grads, float_grads), updated = jax.grad(objective, argnums=(0, 1), has_aux=True)(
        [v.value for v in layer.trainable_variables], [leaves[i] for i in wrt]
    )
    for (variable, _), value in zip(non_trainable, updated):
        variable.assign(value)
    input_grads = [None] * len(leaves)
    for i, grad in zip(wrt, float_grads):
        input_grads[i] = grad
    return input_grads, list(weight_grads)
