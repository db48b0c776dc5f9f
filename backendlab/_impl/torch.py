"""PyTorch: autograd with ``backward()``, then ``optimizer.apply`` under ``no_grad``; compiled, the whole step
as one ``torch.compile`` graph with ``torch.autograd.grad``."""

from __future__ import annotations

import contextlib
import threading
import types

import torch
import torch.distributed as dist

from backendlab.backends import check_device_count
from backendlab.errors import UsageError
from backendlab.workers.ranks import local_rank, local_world_size, under_torchrun


def devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return found


def sync(tree=None) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def threads() -> int:
    return torch.get_num_threads()  # OMP_NUM_THREADS, where set, sized it at import


def refuses_nan(exc: BaseException) -> bool:
    # Keras clips predictions into (0, 1) before torch's binary_cross_entropy, so only a NaN is left outside it;
    # torch raises where the other backends return a NaN loss.
    return isinstance(exc, RuntimeError) and "all elements of input should be between 0 and 1" in str(exc)


def check_devices(devices: int) -> None:
    # Under torchrun on several hosts, each host must hold only its own share.
    local = local_world_size(devices)
    check_device_count(local, torch.cuda.device_count() if torch.cuda.is_available() else 0)


def join_processes(processes: int):
    """``--processes N``: this process is one of N ranks torchrun started (``--nnodes N``, c10d rendezvous)."""
    if not under_torchrun():
        raise UsageError(
            f"on torch, --processes {processes} needs its processes started by torchrun --nnodes {processes} "
            "(backendlab's command line starts them itself)"
        )
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.get_world_size() != processes:
        raise UsageError(f"--processes {processes} but torchrun started {dist.get_world_size()} processes")
    return contextlib.nullcontext()


def process_batches(model, x, y, sample_weight, batch_size: int) -> dict:
    """``fit``'s data from this process's share; unused on torch, where ``fit`` has no multi-process path."""
    return {"x": x, "y": y, "sample_weight": sample_weight, "batch_size": batch_size}


def gather_shares(tree, shares: list[int]):
    """Every rank's share of a batch, in rank order: the global batch (its labels, for the metrics)."""
    import keras

    return keras.tree.map_structure(lambda t: _gather(keras.ops.convert_to_tensor(t), shares), tree)


def data_parallel(devices: int):
    """One process per device, started by torchrun; gradients averaged by DistributedDataParallel."""
    check_devices(devices)
    if not dist.is_initialized():
        if not under_torchrun():
            raise UsageError(
                f"on torch, {devices} devices need {devices} processes started by torchrun: "
                f"torchrun --nproc_per_node {devices} -m backendlab train --devices {devices} "
                "(backendlab's command line starts them itself)"
            )
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.get_world_size() != devices:
        raise UsageError(f"--devices {devices} but torchrun started {dist.get_world_size()} processes")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    return contextlib.nullcontext()


#: This rank's first row in the global batch of the step being taken (0 outside a step).
_step_start = [0]


def replica_first_row(rows) -> int:
    """Where this rank's share of the step's global batch starts (the earlier ranks' shares, even or not)."""
    return _step_start[0]


# Threefry's integer ops as torch's own functions: eager, keras.ops would spend more on checking and
# converting its arguments than the ops take.
_INTEGER_OPS = types.SimpleNamespace(
    add=torch.add,
    bitwise_xor=torch.bitwise_xor,
    bitwise_and=torch.bitwise_and,
    bitwise_or=torch.bitwise_or,
    left_shift=torch.bitwise_left_shift,
    right_shift=torch.bitwise_right_shift,
)


# The same, writing into their first argument (a tensor Threefry made): no new tensor per op.
_INTEGER_OPS_INTO = types.SimpleNamespace(
    add=torch.Tensor.add_,
    bitwise_xor=torch.Tensor.bitwise_xor_,
    bitwise_and=torch.Tensor.bitwise_and_,
    bitwise_or=torch.Tensor.bitwise_or_,
    left_shift=torch.Tensor.bitwise_left_shift_,
)


#: Eagerly, a draw of more counters than this runs in parts of this many, whose 140-odd ops each work on
#: data that stays in the cache. 1 thread: Threefry on 692,224 counters took 26.2 and 31.7 ms whole, 12.8
#: and 17.9 ms in parts (two runs); a Dropout on 32x26x26x16 9.9 ms whole, 8.7 ms in parts (Keras's own
#: 4.6 ms; median of 5); at 43,264 counters parts gain nothing.
_PART = 1 << 16


def random_kernel(threefry):
    """Portable randomness's Threefry on torch's ops, eagerly (Dynamo fuses it where the step is compiled).

    Not ``torch.compile``d on its own: Inductor takes 7 to 30 s to build it, per process; nor TorchScript's
    fuser, which needs LLVM, absent from the CPU wheel (``LLVM Backend not found``)."""

    def kernel(k0, k1, c0, c1):
        if c0.numel() <= _PART or torch.compiler.is_compiling():
            return threefry((k0, k1), (c0, c1), _INTEGER_OPS, _INTEGER_OPS_INTO)
        shape, c0, c1 = c0.shape, c0.reshape(-1), c1.reshape(-1)
        parts = [
            threefry((k0, k1), (c0[i : i + _PART], c1[i : i + _PART]), _INTEGER_OPS, _INTEGER_OPS_INTO)
            for i in range(0, len(c0), _PART)
        ]
        return tuple(torch.cat([part[word] for part in parts]).reshape(shape) for word in (0, 1))

    return kernel


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shares(n: int, world: int) -> list[int]:
    """How many of a batch's ``n`` samples each rank trains on: as even as can be, in rank order."""
    return [(r + 1) * n // world - r * n // world for r in range(world)]


def _gather(shard, shares: list[int]):
    """Every rank's share of the batch, in rank order: the global batch.

    all_gather moves equal sizes, so each shard travels padded to the largest share and is cut back.
    """
    size = max(shares)
    if len(shard) < size:
        shard = torch.cat([shard, shard.new_zeros((size - len(shard), *shard.shape[1:]))])
    parts = [torch.empty_like(shard[:size]) for _ in shares]
    dist.all_gather(parts, shard[:size].contiguous())
    return torch.cat([part[:count] for part, count in zip(parts, shares)])


#: How many models (or batch shapes) one process may compile a whole step for.
_RECOMPILE_LIMIT = 64


def _one_graph(fn):
    """``fn`` under ``torch.compile(fullgraph=True)``: one graph, or an error naming the break.

    Dynamo traces ``torch.autograd.grad`` into the graph only with ``trace_autograd_ops``; the flag
    is set for this function's own calls (and compiles) alone: set for the whole process it was
    seen to crash the compile of Keras's own ``fit(jit_compile=True)``. Static shapes: every model
    compiles this same code, and a second model's shapes made Dynamo retrace it with dynamic
    shapes, which Inductor failed to lower for a CNN's backward (torch 2.13); the recompile limit
    is raised for these calls alone, so that a process that trains many models keeps compiling.
    """
    compiled = torch.compile(fn, fullgraph=True, dynamic=False)

    def call(*args):
        with torch._dynamo.config.patch(trace_autograd_ops=True, recompile_limit=_RECOMPILE_LIMIT), _mps_known():
            return compiled(*args)

    return call


_mps_available = torch.backends.mps.is_available
_MPS = _mps_available()


def _mps_constant() -> bool:
    return _MPS  # plain Python: Dynamo inlines it


_mps_lock = threading.Lock()
_mps_depth = [0]  # compiled calls inside _mps_known now, in every thread: the last one out puts torch's back


@contextlib.contextmanager
def _mps_known():
    """Within it, ``torch.backends.mps.is_available()`` is a constant to Dynamo: Keras's torch
    ``binary_crossentropy`` asks it on every call, and Dynamo cannot put a function returning a bool in a
    graph (``torch.* op returned non-Tensor``), which broke every whole step with binary cross-entropy."""
    with _mps_lock:
        _mps_depth[0] += 1
        torch.backends.mps.is_available = _mps_constant
    try:
        yield
    finally:
        with _mps_lock:
            _mps_depth[0] -= 1
            if not _mps_depth[0]:
                torch.backends.mps.is_available = _mps_available


def _gradients(loss, variables) -> list:
    """``d loss / d variable`` by ``torch.autograd.grad``; None for a variable the loss does not use,
    as its ``.grad`` is after ``backward()`` (the optimizer skips it)."""
    return list(torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True))


def make_train_step(model, loss_fn, optimizer, jit_compile=None):
    """``jit_compile=True`` compiles the whole step as one graph (forward pass, loss, ``torch.autograd.grad``
    and the optimizer's update: :func:`_one_graph`); under DDP (several ranks) only the forward pass and
    the loss, since DDP averages the gradients in hooks that only ``backward()`` runs. None or False
    run eagerly."""
    import keras
    from torch.nn.parallel import DistributedDataParallel

    optimizer.build(model.trainable_variables)
    rank, world = _world()
    # Under torchrun every rank holds the same global batch and trains on its share;
    # DDP averages the gradients across ranks during backward().
    net = DistributedDataParallel(model) if world > 1 else model

    def forward_loss(x, y, sample_weight):
        y_pred = net(x, training=True)
        loss = loss_fn(y, y_pred, sample_weight)
        for extra in model.losses:  # regularization, as fit adds it
            loss = loss + extra
        return loss, y_pred

    def whole_step(x, y, sample_weight):
        loss, y_pred = forward_loss(x, y, sample_weight)
        grads = _gradients(loss, model.trainable_weights)
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_weights)
        return loss.detach(), keras.tree.map_structure(lambda t: t.detach(), y_pred)

    one_graph = bool(jit_compile) and world == 1
    if one_graph:
        whole_step = _one_graph(whole_step)
    elif jit_compile:
        forward_loss = torch.compile(forward_loss)

    def step(x, y, sample_weight=None, given: list[int] | None = None):
        if one_graph:
            return whole_step(x, y, sample_weight)
        share = 1.0
        if world > 1:
            if given is None:  # every rank holds the global batch (--devices N): each takes its share
                n = len(keras.tree.flatten(x)[0])
                shares = _shares(n, world)
                start = sum(shares[:rank])
                # A rank left without a sample (a batch smaller than the world) still takes part in
                # DDP's all-reduce: it trains on a copy of the batch's first sample, weighted zero.
                part = slice(start, start + shares[rank]) if shares[rank] else slice(0, 1)
                x, y, sample_weight = (
                    None if t is None else keras.tree.map_structure(lambda a: a[part], t) for t in (x, y, sample_weight)
                )
            else:  # each rank was given only its own share (--processes N)
                shares, n = given, sum(given)
            # DDP averages over ranks, each rank's loss being the mean over its share (its weighted
            # losses summed, over its samples); weighting each by its share of the batch makes that
            # the mean over the batch's samples, also when the shares differ (a last, partial batch).
            share = shares[rank] * world / n
            _step_start[0] = sum(shares[:rank])
        try:
            loss, y_pred = forward_loss(x, y, sample_weight)
        finally:
            _step_start[0] = 0
        model.zero_grad()
        (loss * share).backward()
        grads = [v.value.grad for v in model.trainable_weights]
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_weights)
        loss = loss.detach()
        y_pred = keras.tree.map_structure(lambda t: t.detach(), y_pred)
        if world > 1:  # report the global batch's loss and predictions, as one device would
            loss = loss * share / world
            dist.all_reduce(loss)
            y_pred = keras.tree.map_structure(lambda t: _gather(t, shares), y_pred)
        return loss, y_pred

    def run_many(batches) -> list:
        return [step(*batch)[0] for batch in batches]  # (x, y) or (x, y, sample_weight)

    step.run_many = run_many
    return step


@contextlib.contextmanager
def whole_step_fit(model):
    """Within it, ``model.fit`` runs each step as one ``torch.compile`` graph: Keras's own ``train_step``
    (forward pass, ``compute_loss`` with the sample weights and regularization, the loss tracker,
    the optimizer's ``apply`` and ``compute_metrics``) with ``torch.autograd.grad`` for its
    ``backward()``, which Dynamo cannot put in a graph (Keras's own ``jit_compile=True`` breaks there).

    Installed on this model alone (its ``make_train_function``) and taken off on leaving. Under DDP
    (several ranks) ``fit`` is Keras's own: DDP averages the gradients in hooks only ``backward()`` runs.
    """
    import keras

    if _world()[1] > 1:
        yield model
        return

    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data[0])
        y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
        loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        batch = next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
        model._loss_tracker.update_state(loss, sample_weight=batch)
        grads = _gradients(model.optimizer.scale_loss(loss), model.trainable_weights)
        with torch.no_grad():
            model.optimizer.apply(grads, model.trainable_weights)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    keras_make = type(model).make_train_function

    def make_train_function(force=False):
        if model.train_function is None or force:
            keras_make(model, force)  # Keras's checks (steps_per_execution), then ours in its place
            model.train_function = _one_graph(train_step)
        return model.train_function

    own = model.__dict__.get("make_train_function")
    model.make_train_function, model.train_function = make_train_function, None
    try:
        yield model
    finally:
        if own is None:
            del model.make_train_function  # back to the class's
        else:
            model.make_train_function = own
        model.train_function = None  # the next fit makes Keras's own


def resolved_jit_compile(jit_compile=None) -> bool:
    """Whether ``make_train_step`` compiles the step with ``torch.compile``: only if asked (else eager)."""
    return bool(jit_compile)


def fit_gradients(model, x, y, sample_weight=None):
    """One batch's loss and gradients as ``fit``'s ``train_step`` computes them, before the update."""
    y_pred = model(x, training=True)
    model.zero_grad()
    loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    model.optimizer.scale_loss(loss).backward()
    return loss.detach(), [v.value.grad for v in model.trainable_weights]


def apply_gradients(optimizer, grads, variables) -> None:
    """``optimizer.apply`` under ``no_grad``, as ``fit``'s step calls it."""
    with torch.no_grad():
        optimizer.apply(grads, variables)


def input_and_weight_gradients(layer, inputs, cotangent, training):
    """The gradients of ``sum(outputs * cotangent)`` by ``torch.autograd.grad``.

    ``(input_grads, weight_grads)``: one per leaf of ``inputs`` (None where it is not a float),
    one per ``layer.trainable_variables``; a weight the outputs do not depend on gets zeros.
    """
    import keras

    from backendlab._impl.common import differentiable, weighted_sum

    leaves = [keras.ops.convert_to_tensor(x) for x in keras.tree.flatten(inputs)]
    wrt = [i for i, x in enumerate(leaves) if differentiable(x)]
    for i in wrt:
        leaves[i] = leaves[i].detach().clone().requires_grad_(True)
    sources = [leaves[i] for i in wrt] + [v.value for v in layer.trainable_variables]
    outputs = layer(keras.tree.pack_sequence_as(inputs, leaves), training=training)
    objective = weighted_sum(outputs, cotangent)
    if objective.requires_grad:
        grads = torch.autograd.grad(objective, sources, allow_unused=True)
    else:  # nothing the outputs depend on can be differentiated
        grads = [None] * len(sources)
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(sources, grads)]
    input_grads = [None] * len(leaves)
    for i, grad in zip(wrt, grads):
        input_grads[i] = grad
    return input_grads, grads[len(wrt) :]


def profile_phases(model, loss_fn, optimizer, x, y, repeats: int) -> dict[str, float]:
    """Median ms of an eager step's forward pass, loss and backward, and optimizer update, each timed alone."""
    from backendlab._impl.common import median_ms

    forward = median_ms(lambda: model(x, training=True), sync, repeats)

    def loss_and_backward():
        model.zero_grad()
        loss_fn(y, model(x, training=True)).backward()

    backward = median_ms(loss_and_backward, sync, repeats) - forward
    grads = [v.value.grad for v in model.trainable_weights]

    def update():
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_weights)

    return {"forward_ms": forward, "loss_and_backward_ms": backward, "optimizer_ms": median_ms(update, sync, repeats)}
