"""What each epoch feeds the model: fit's arrays (or the pipeline's batches) and the custom loop's batches,
each step checksummed; under ``--processes``, only this process's share of every global batch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backendlab.backends import impl
from backendlab.pipelines import InputRecorder, batch_checksum
from backendlab.training.schedule import RECORD_READS, batch_slices, own_share, pad_last_batch
from backendlab.workers.ranks import process_index

if TYPE_CHECKING:
    from backendlab.data import Dataset
    from backendlab.runspec import RunSpec
    from backendlab.training.preparation import Prepared


def take_own(data: Dataset, index: np.ndarray) -> tuple[Any, Any]:
    """``data.take("train", index)``, where ``index`` is this process's own share; noted where asked for."""
    folder = os.environ.get(RECORD_READS)
    if folder:
        with open(Path(folder) / f"reads-{process_index()}.txt", "a") as f:
            f.write(" ".join(map(str, np.asarray(index).tolist())) + "\n")
    return data.take("train", index)


def _take_rows(tree, part: slice):
    return {k: v[part] for k, v in tree.items()} if isinstance(tree, dict) else tree[part]


def fit_feed(prep: Prepared, order, recorder: InputRecorder) -> dict:
    """What ``fit`` takes for one epoch: the pipeline's batches, as read, or the arrays in ``order``
    (under ``--processes``, this process's share of every global batch, and nothing else).

    Each step's checksum is of its real samples, without fit's zero-weight padding of a last batch
    (:func:`pad_last_batch`), so that it equals the custom loop's, which pads nothing.
    """
    config, data = prep.config, prep.data
    if data.pipeline:
        # A generator of the batches, read and checksummed as fit asks for them.
        batches = recorder.epoch(data.kind, data.pipeline.source, data.pipeline.steps)
        return {"x": batches, "steps_per_epoch": data.pipeline.steps}
    real = order
    order, weights = pad_last_batch(order, config)
    if config.processes > 1:
        _note_global_batches(real, config, recorder)
        positions = own_share(np.arange(len(order)), config)
        x, y = take_own(data, order[positions])
        own_weights = None if weights is None else weights[positions]
        local = config.batch_size // config.processes
        return {**impl().process_batches(prep.model, x, y, own_weights, local), "shuffle": False}
    x, y = data.take("train", order)
    for part in batch_slices(len(real), config.batch_size):  # the padding, if any, comes after them
        recorder.checksums.append(batch_checksum(_take_rows(x, part), _take_rows(y, part)))
    return {"x": x, "y": y, "batch_size": config.batch_size, "shuffle": False, "sample_weight": weights}


def _note_global_batches(order, config: RunSpec, recorder: InputRecorder) -> None:
    """Under ``--processes``: each step's checksum is of its global batch's sample numbers in backendlab's
    seeded order, which every process knows; no process reads another's rows to prove what it was fed."""
    for part in batch_slices(len(order), config.batch_size):
        rows = np.asarray(order[part], dtype=np.int64)
        recorder.checksums.append(batch_checksum(rows, rows[:0]))


def epoch_batches(prep: Prepared, order, recorder: InputRecorder):
    """One epoch's ``(x, y, shares)`` for the custom loop: the pipeline's batches, or backendlab's in
    ``order``. Under ``--processes``, ``x, y`` are this process's share of each global batch and
    ``shares`` every process's share size (None otherwise)."""
    config, data = prep.config, prep.data
    if data.pipeline:
        for x, y in recorder.epoch(data.kind, data.pipeline.source):
            yield x, y, None
        return
    if config.processes > 1:
        _note_global_batches(order, config, recorder)
    for part in batch_slices(len(order), config.batch_size):
        if config.processes > 1:
            own = own_share(order[part], config)
            shares = [len(own_share(order[part], config, r)) for r in range(config.processes)]
            # A share left empty (a last batch smaller than the world) trains on its first row, weighted 0.
            x, y = take_own(data, own if len(own) else own_share(order, config)[:1])
        else:
            shares = None
            x, y = data.take("train", order[part])
            recorder.checksums.append(batch_checksum(x, y))
        yield x, y, shares
