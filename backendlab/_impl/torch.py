"""PyTorch: autograd with ``backward()``, then ``optimizer.apply`` under ``no_grad``."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from backendlab.backends import check_device_count
from backendlab.errors import UsageError


def devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return found


def sync(tree=None) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def check_devices(devices: int) -> None:
    # Under torchrun on several hosts, each host must hold only its own share.
    local = int(os.environ.get("LOCAL_WORLD_SIZE", devices))
    check_device_count(local, torch.cuda.device_count() if torch.cuda.is_available() else 0)


def data_parallel(devices: int):
    """One process per device, started by torchrun; gradients averaged by DistributedDataParallel."""
    check_devices(devices)
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:
            raise UsageError(
                f"on torch, {devices} devices need {devices} processes started by torchrun: "
                f"torchrun --nproc_per_node {devices} -m backendlab train --devices {devices} "
                "(backendlab's command line starts them itself)"
            )
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.get_world_size() != devices:
        raise UsageError(f"--devices {devices} but torchrun started {dist.get_world_size()} processes")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return contextlib.nullcontext()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(shard):
    """Every rank's share of the batch, in rank order: the global batch."""
    parts = [torch.empty_like(shard) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, shard.contiguous())
    return torch.cat(parts)


def make_train_step(model, loss_fn, optimizer):
    import keras
    from torch.nn.parallel import DistributedDataParallel

    optimizer.build(model.trainable_variables)
    rank, world = _world()
    # Under torchrun every rank holds the same global batch and trains on its share;
    # DDP averages the gradients across ranks during backward().
    net = DistributedDataParallel(model) if world > 1 else model

    def step(x, y):
        share = 1.0
        if world > 1:
            n = len(keras.tree.flatten(x)[0])
            part = slice(rank * n // world, (rank + 1) * n // world)
            x, y = (keras.tree.map_structure(lambda a: a[part], t) for t in (x, y))
            # DDP averages over ranks; weighting by the share makes that the global mean.
            share = (part.stop - part.start) * world / n
        y_pred = net(x, training=True)
        loss = loss_fn(y, y_pred)
        for extra in model.losses:  # regularization, as fit adds it
            loss = loss + extra
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
            y_pred = keras.tree.map_structure(_gather, y_pred)
        return loss, y_pred

    return step
