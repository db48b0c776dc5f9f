"""JAX: ``stateless_call`` + ``jax.value_and_grad`` + ``optimizer.stateless_apply`` under ``jax.jit``."""

from __future__ import annotations

import contextlib
import os

import jax

from backendlab.backends import check_device_count
from backendlab.errors import UsageError
from backendlab.workers.ranks import process_place
from backendlab.workers.threads import usable_cores


def devices() -> list[str]:
    return [f"{d.platform}:{d.id}" for d in jax.devices()]


def sync(tree) -> None:
    jax.block_until_ready(tree)


#: XLA's CPU client runs each op on its pool, or on one thread with these flags (bench's and tune's ``--threads 1``).
_SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def threads() -> int:
    """XLA's CPU pool: one thread under the flags above, else ``PJRT_NPROC`` or ``NPROC`` (XLA reads them when its
    CPU client starts; backendlab.workers.threads sets the first), else one per usable core."""
    if _SINGLE_THREAD_FLAGS in os.environ.get("XLA_FLAGS", ""):
        return 1
    for variable in ("PJRT_NPROC", "NPROC"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return usable_cores()


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


def replica_first_row(rows) -> int:
    """0: under DataParallel a step is one global program, whose draws span the global batch."""
    return 0


def random_kernel(threefry):
    """Portable randomness's Threefry as one XLA kernel (inlined where the step is already jitted)."""
    return jax.jit(lambda k0, k1, c0, c1: threefry((k0, k1), (c0, c1)))


def _training(model) -> dict:
    """``training=True`` for a model whose ``call`` takes it; ``stateless_call`` passes it on regardless
    (Keras's own JAX trainer asks the same question)."""
    return {"training": True} if getattr(model, "_call_has_training_arg", True) else {}


def make_train_step(model, loss_fn, optimizer, jit_compile=None):
    """``jit_compile``: None or True run the step under ``jax.jit``; False runs it op by op (for debugging)."""
    optimizer.build(model.trainable_variables)
    training = _training(model)

    def compute_loss(trainable, non_trainable, x, y, sample_weight):
        y_pred, non_trainable, losses = model.stateless_call(
            trainable, non_trainable, x, return_losses=True, **training
        )
        loss = loss_fn(y, y_pred, sample_weight)
        for extra in losses:  # regularization, as fit adds it
            loss = loss + extra
        return loss, (y_pred, non_trainable)

    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

    def update(trainable, non_trainable, opt_vars, x, y, sample_weight=None):
        (loss, (y_pred, non_trainable)), grads = grad_fn(trainable, non_trainable, x, y, sample_weight)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return loss, y_pred, trainable, non_trainable, opt_vars

    jitted = update if jit_compile is False else jax.jit(update)

    def state() -> tuple[list, list, list]:
        return (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables],
        )

    def write_back(trainable, non_trainable, opt_vars) -> None:
        # Into the Keras variables, so predict, evaluate and save see the trained weights
        # and the optimizer carries its state over.
        for variables, values in (
            (model.trainable_variables, trainable),
            (model.non_trainable_variables, non_trainable),
            (optimizer.variables, opt_vars),
        ):
            for variable, value in zip(variables, values):
                variable.assign(value)

    def step(x, y, sample_weight=None):
        loss, y_pred, *new_state = jitted(*state(), x, y, sample_weight)
        write_back(*new_state)
        return loss, y_pred

    def run_many(batches) -> list:
        """The state stays in JAX arrays from step to step and goes back into Keras once, at the end."""
        current, losses = state(), []
        for batch in batches:  # (x, y) or (x, y, sample_weight)
            loss, _, *current = jitted(*current, *batch)
            losses.append(loss)
        write_back(*current)
        return losses

    step.run_many = run_many
    return step


def whole_step_fit(model):
    """``fit`` as it is: Keras already compiles its whole train step in one graph here."""
    return contextlib.nullcontext(model)


def resolved_jit_compile(jit_compile=None) -> bool:
    """Whether ``make_train_step`` compiles the step with this ``jit_compile``: under ``jax.jit`` (XLA) unless False."""
    return jit_compile is not False


def fit_gradients(model, x, y, sample_weight=None):
    """One batch's loss and gradients as ``fit``'s jitted ``train_step`` computes them, before the update.

    The trainer's own ``compute_loss_and_updates`` under ``jax.value_and_grad``; the forward
    pass's non-trainable updates (BatchNorm statistics, seed states) are written to the model.
    """
    variables = [model.trainable_variables, model.non_trainable_variables, model.metrics_variables]
    grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)

    @jax.jit
    def compute(trainable, non_trainable, metrics, optimizer_variables, x, y, sample_weight):
        return grad_fn(
            trainable,
            non_trainable,
            metrics,
            x,
            y,
            sample_weight,
            training=True,
            optimizer_variables=optimizer_variables,
        )

    (_, (loss, _, non_trainable, _)), grads = compute(
        *([v.value for v in group] for group in variables),
        [v.value for v in model.optimizer.variables],
        x,
        y,
        sample_weight,
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

    from backendlab._impl.common import differentiable, weighted_sum

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


def profile_phases(model, loss_fn, optimizer, x, y, repeats: int) -> dict[str, float]:
    """Median ms of a step's forward pass, loss and backward, and optimizer update, each its own jax.jit."""
    from backendlab._impl.common import median_ms

    optimizer.build(model.trainable_variables)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    opt_vars = [v.value for v in optimizer.variables]

    def compute_loss(trainable):
        y_pred, _ = model.stateless_call(trainable, non_trainable, x, **_training(model))
        return loss_fn(y, y_pred)

    forward = jax.jit(lambda t: model.stateless_call(t, non_trainable, x, **_training(model))[0])
    grad = jax.jit(jax.value_and_grad(compute_loss))
    _, grads = grad(trainable)
    update = jax.jit(lambda o, t: optimizer.stateless_apply(o, grads, t))
    forward_ms = median_ms(lambda: forward(trainable), sync, repeats)
    return {
        "forward_ms": forward_ms,
        "loss_and_backward_ms": median_ms(lambda: grad(trainable), sync, repeats) - forward_ms,
        "optimizer_ms": median_ms(lambda: update(opt_vars, trainable), sync, repeats),
    }
