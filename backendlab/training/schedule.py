"""Which samples each training step reads: epoch orders, batches, padding, and each process's share.

Batches come in an order backendlab draws from a seeded NumPy generator, never the
backend's, so the same seed gives the same batches on every backend. NumPy only: nothing
here imports Keras or a framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from backendlab.errors import UsageError
from backendlab.workers.ranks import process_index

if TYPE_CHECKING:
    from backendlab.data import Dataset
    from backendlab.runspec import RunSpec


def epoch_orders(num_samples: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The sample order of every epoch, from a seeded NumPy generator shared by all backends."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(num_samples) for _ in range(epochs)]


def batch_slices(num_samples: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, num_samples)) for i in range(0, num_samples, batch_size)]


def samples_per_epoch(config: RunSpec, num_samples: int) -> int:
    """All samples, or only the full batches' when the last, partial batch is dropped."""
    return num_samples - num_samples % config.batch_size if config.drop_remainder else num_samples


def steps_per_epoch(config: RunSpec, num_samples: int) -> int:
    return len(batch_slices(samples_per_epoch(config, num_samples), config.batch_size))


def epoch_steps(config: RunSpec, data: Dataset) -> int:
    """Training steps per epoch: a pipeline's own batches, or backendlab's over the arrays."""
    return data.pipeline.steps if data.pipeline else steps_per_epoch(config, data.num_train)


def check_pipeline_options(spec: RunSpec, data: Dataset, given_batch_size: bool) -> None:
    """A pipeline fixes its batches and their order: refuse the options that would change them."""
    if data.pipeline is None:
        return
    what = f"data {data.name!r} is a {data.kind} pipeline, which fixes its own batches"
    if given_batch_size:
        raise UsageError(f"--batch-size {spec.batch_size} does not apply: {what}; batch it in the pipeline instead")
    if spec.drop_remainder:
        raise UsageError(f"--drop-remainder does not apply: {what}; drop the last batch in the pipeline instead")
    if spec.devices > 1:
        raise UsageError(f"--devices {spec.devices} takes arrays: {what}, and backendlab splits only its own batches")
    if spec.processes > 1:
        raise UsageError(
            f"--processes {spec.processes} takes arrays: {what}, and backendlab shares out only its own batches"
        )


# --- the last, partial batch on several devices ---------------------------------------


def padded_samples(config: RunSpec, num_samples: int) -> int:
    """How many zero-weight samples the devices train on in each epoch's last batch, so each has its part.

    fit pads a last batch that does not split evenly to a multiple of the devices (JAX shards a
    batch only in equal parts; each TensorFlow replica averages its own part). torch's custom
    loop splits it unevenly and weights each rank by its share; only a rank left with no sample
    (a last batch smaller than the world) trains on one zero-weight copy.
    """
    remainder = samples_per_epoch(config, num_samples) % config.batch_size
    if config.replicas == 1 or not remainder:
        return 0
    if config.loop == "fit":
        return -remainder % config.replicas
    return max(config.replicas - remainder, 0)


def pad_last_batch(order: np.ndarray, config: RunSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """``order`` with its last batch padded for fit (:func:`padded_samples`), and fit's sample weights.

    The padding repeats the batch's own first samples (so their losses are finite) with weight 0.
    Keras divides a batch's weighted losses by all its samples ("sum_over_batch_size"), so the
    real samples weigh padded/real: the batch's loss and gradient are the mean over its real
    samples, as on one device. Nothing to pad: ``(order, None)``.
    """
    pad = padded_samples(config, len(order)) if config.loop == "fit" else 0
    if not pad:
        return order, None
    start = len(order) - len(order) % config.batch_size
    weights = np.ones(len(order) + pad, dtype="float32")
    weights[start:] = (len(order) + pad - start) / (len(order) - start)
    weights[len(order) :] = 0.0
    copies = order[start:][np.arange(pad) % (len(order) - start)]
    if config.processes > 1:  # each process pads its share with its own rows, never another's
        size, n = len(order) + pad - start, config.processes
        for i, position in enumerate(range(len(order) - start, size)):
            rank = position * n // size  # whose share the position is in, and that share's first position:
            first = start + rank * size // n  # a real row of its own, or else its first row of the epoch
            copies[i] = order[first] if first < len(order) else order[rank * config.batch_size // n]
    return np.concatenate([order, copies]), weights


# --- several processes: each reads only its share of every global batch ------------------

#: A folder where each process of a ``--processes`` run writes the training samples it read (for tests).
RECORD_READS = "BACKENDLAB_RECORD_READS"


def own_share(order: np.ndarray, config: RunSpec, rank: int | None = None) -> np.ndarray:
    """The rows of ``order`` process ``rank`` trains on: its slice of each global batch, batch after batch.

    Global batch ``k`` is ``order[k*B:(k+1)*B]``; process ``r`` of ``N`` takes its ``r``-th part of it
    (as even as can be, in process order), the way a DistributedSampler hands each rank its share.
    Concatenated, the shares are the process's own data for the epoch: a local batch of ``B/N`` is its
    share of the global batch of the same number.
    """
    rank = process_index() if rank is None else rank
    n = config.processes
    parts = []
    for part in batch_slices(len(order), config.batch_size):
        batch = order[part]
        parts.append(batch[rank * len(batch) // n : (rank + 1) * len(batch) // n])
    return np.concatenate(parts) if parts else order[:0]


def first_rows(spec: RunSpec, num_samples: int) -> np.ndarray:
    """The samples a model is first run on: the first batch's, or under ``--processes`` this process's share of it."""
    rows = np.arange(min(spec.batch_size, num_samples))
    return own_share(rows, spec) if spec.processes > 1 else rows
