"""TensorFlow: ``tf.GradientTape`` under ``tf.function``, as in the seed's loop."""

from __future__ import annotations

import contextlib
import os

import tensorflow as tf

from backendlab.backends import check_device_count
from backendlab.errors import UsageError
from backendlab.workers.ranks import has_tf_config, process_place, set_tf_config
from backendlab.workers.threads import usable_cores


def devices() -> list[str]:
    return [d.name for d in tf.config.list_logical_devices()]


def sync(tree) -> None:
    for leaf in tf.nest.flatten(tree):
        if hasattr(leaf, "numpy"):
            leaf.numpy()


def threads() -> int:
    """The intra-op pool: as set (bench's and tune's ``--threads``), else ``TF_NUM_INTRAOP_THREADS`` (read when
    TensorFlow starts; backendlab.workers.threads sets it), else one per usable core (TensorFlow's 0)."""
    from_env = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    set_here = tf.config.threading.get_intra_op_parallelism_threads()
    return set_here or (int(from_env) if from_env.isdigit() else 0) or usable_cores()


def refuses_nan(exc: BaseException) -> bool:
    return False  # TensorFlow computes with NaN like any other number


def check_devices(devices: int) -> None:
    check_device_count(devices, len(tf.config.list_physical_devices("GPU")))


def data_parallel(devices: int):
    """``tf.distribute.MirroredStrategy`` over ``devices`` GPUs, or logical CPU devices on a CPU-only machine;
    ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes several hosts.

    Returns the strategy's scope: the model must be built and compiled inside it.
    """
    if has_tf_config():
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


def join_processes(processes: int):
    """``--processes N``: ``MultiWorkerMirroredStrategy`` over N workers, with a ``TF_CONFIG`` made for them.

    Returns the strategy's scope: the model must be built and compiled inside it.
    """
    rank, addresses = process_place(processes)
    set_tf_config(addresses, rank)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _fix_multi_worker_logs()
    return strategy.scope()


def process_batches(model, x, y, sample_weight, batch_size: int) -> dict:
    """``fit``'s data: a dataset each worker makes from its own rows alone (``distribute_datasets_from_function``).

    Keras 3.15's ``fit`` cannot take such a dataset as it comes: before the first step it averages a
    batch across the workers to build the model symbolically, which fails eagerly. The model is built
    here on one of this worker's batches instead, and that averaging skipped for it.
    """
    strategy = model.distribute_strategy  # the one the model was built under
    parts = (x, y) if sample_weight is None else (x, y, sample_weight)

    def dataset(context):
        return tf.data.Dataset.from_tensor_slices(parts).batch(batch_size)

    with strategy.scope():
        model._symbolic_build(data_batch=tf.nest.map_structure(lambda a: a[:batch_size], parts))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    return {"x": strategy.distribute_datasets_from_function(dataset)}


def _fix_multi_worker_logs() -> None:
    """Keras 3.15 averages each step's logs across workers along axis 0, which a scalar lacks (the
    step fails: "Invalid reduction dimension 0 for input with 0 dimensions"); average them whole."""
    from keras.src.backend.tensorflow import trainer

    original = getattr(trainer.reduce_per_replica, "__wrapped__", trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.__wrapped__ = original
    trainer.reduce_per_replica = reduce_per_replica


def gather_shares(tree, shares: list[int]):
    """The global batch from the shares: TensorFlow's --processes trains with fit, which gathers them itself."""
    return tree


def replica_first_row(rows):
    """The replica's number times its rows: each replica of a (multi-worker) MirroredStrategy runs on the
    next slice of the global batch, in replica order (an uneven last batch: see docs/randomness.md)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0
    return context.replica_id_in_sync_group * rows


def random_kernel(threefry):
    """Portable randomness's Threefry as one XLA kernel, also inside a ``tf.function`` graph that is not
    compiled (Keras's ``fit`` on CPU), where its ops would otherwise run one by one."""
    scalar, grid = tf.TensorSpec([], tf.int32), tf.TensorSpec([None, None], tf.int32)
    return tf.function(
        lambda k0, k1, c0, c1: threefry((k0, k1), (c0, c1)),
        jit_compile=True,
        input_signature=[scalar, scalar, grid, grid],
    )


def make_train_step(model, loss_fn, optimizer, jit_compile=None):
    """``jit_compile``: True compiles the graph with XLA; None or False run it as a plain tf.function graph."""
    # Build the optimizer's slots eagerly: tf.function must not create variables.
    optimizer.build(model.trainable_variables)

    @tf.function(reduce_retracing=True, jit_compile=bool(jit_compile))
    def step(x, y, sample_weight=None):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = loss_fn(y, y_pred, sample_weight)
            if model.losses:  # regularization, as fit adds it
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        return loss, y_pred

    def run_many(batches) -> list:
        return [step(*batch)[0] for batch in batches]  # (x, y) or (x, y, sample_weight)

    step.run_many = run_many
    return step


def whole_step_fit(model):
    """``fit`` as it is: Keras already compiles its whole train step in one graph here."""
    return contextlib.nullcontext(model)


def resolved_jit_compile(jit_compile=None) -> bool:
    """Whether ``make_train_step`` compiles the step with XLA: only if asked (else a plain tf.function graph)."""
    return bool(jit_compile)


def fit_gradients(model, x, y, sample_weight=None):
    """One batch's loss and gradients as ``fit``'s ``train_step`` computes them, before the update.

    Gradients stay as the tape gives them (``tf.IndexedSlices`` for an Embedding), since that
    is what the optimizer receives in ``fit``.
    """
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        scaled = model.optimizer.scale_loss(loss)
    return loss, tape.gradient(scaled, model.trainable_weights)


def apply_gradients(optimizer, grads, variables) -> None:
    """``optimizer.apply``, as ``fit``'s step calls it."""
    optimizer.apply(grads, variables)


def input_and_weight_gradients(layer, inputs, cotangent, training):
    """The gradients of ``sum(outputs * cotangent)`` by ``tf.GradientTape``, eagerly.

    ``(input_grads, weight_grads)``: one per leaf of ``inputs`` (None where it is not a float),
    one per ``layer.trainable_variables``; a weight the outputs do not depend on gets zeros, and
    an Embedding's sparse gradient comes back dense.
    """
    import keras

    from backendlab._impl.common import differentiable, weighted_sum

    leaves = [tf.convert_to_tensor(x) for x in keras.tree.flatten(inputs)]
    wrt = [i for i, x in enumerate(leaves) if differentiable(x)]
    weights = [v.value for v in layer.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch([leaves[i] for i in wrt])
        outputs = layer(keras.tree.pack_sequence_as(inputs, leaves), training=training)
        objective = weighted_sum(outputs, cotangent)
    grads = tape.gradient(
        objective, [leaves[i] for i in wrt] + weights, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    grads = [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices (an Embedding's) made dense
    input_grads = [None] * len(leaves)
    for i, grad in zip(wrt, grads):
        input_grads[i] = grad
    return input_grads, grads[len(wrt) :]


def profile_phases(model, loss_fn, optimizer, x, y, repeats: int) -> dict[str, float]:
    """Median ms of a step's forward pass, loss and backward, and optimizer update, each its own tf.function."""
    from backendlab._impl.common import median_ms

    optimizer.build(model.trainable_variables)
    forward = tf.function(lambda: model(x, training=True))

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_weights)

    grads = gradients()
    update = tf.function(lambda: optimizer.apply(grads, model.trainable_weights))
    forward_ms = median_ms(forward, sync, repeats)
    return {
        "forward_ms": forward_ms,
        "loss_and_backward_ms": median_ms(gradients, sync, repeats) - forward_ms,
        "optimizer_ms": median_ms(lambda: (update(), optimizer.iterations)[1], sync, repeats),
    }
