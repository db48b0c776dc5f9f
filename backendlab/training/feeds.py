"""What each epoch feeds the model: fit's arrays (or the pipeline's batches) and the custom loop's batches,
with their sample weights where the data has them, each step checksummed; under ``--processes``, only this
process's share of every global batch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backendlab.backends import impl
from backendlab.pipelines import InputRecorder, batch_checksum, split_batch
from backendlab.training.schedule import RECORD_READS, batch_slices, own_share, pad_last_batch
from backendlab.workers.ranks import process_index

if TYPE_CHECKING:
    from backendlab.data import Dataset
    from backendlab.runspec import RunSpec
    from backendlab.training.preparation import Prepared


def take_own(data: Dataset, index: np.ndarray) -> tuple[Any, Any, Any]:
    """The train rows ``index`` (this process's own share) as ``(x, y, sample_weight)``; noted where asked for."""
    folder = os.environ.get(RECORD_READS)
    if folder:
        with open(Path(folder) / f"reads-{process_index()}.txt", "a") as f:
            f.write(" ".join(map(str, np.asarray(index).tolist())) + "\n")
    return (*data.take("train", index), data.weights("train", index))


def _take_rows(tree, part: slice):
    if tree is None:
        return None
    return {k: v[part] for k, v in tree.items()} if isinstance(tree, dict) else tree[part]


def fit_feed(prep: Prepared, order, recorder: InputRecorder) -> dict:
    """What ``fit`` takes for one epoch: the pipeline's batches, as read, or the arrays in ``order``
    (under ``--processes``, this process's share of every global batch, and nothing else).

    Each step's checksum is of its real samples, without fit's zero-weight padding of a last batch
    (:func:`pad_last_batch`), so that it equals the custom loop's, which pads nothing. The data's own
    sample weights go to fit as ``sample_weight``; ``check_padding`` refuses them with padding, whose
    weights would take their place.
    """
    config, data = prep.config, prep.data
    if data.pipeline:
        # A generator of the batches, read and checksummed as fit asks for them.
        batches = recorder.epoch(data.kind, data.pipeline.source, data.pipeline.steps)
        return {"x": batches, "steps_per_epoch": data.pipeline.steps}
    real = order
    order, padding = pad_last_batch(order, config)
    if config.processes > 1:
        _note_global_batches(real, config, recorder)
        positions = own_share(np.arange(len(order)), config)
        x, y, w = take_own(data, order[positions])
        w = w if padding is None else padding[positions]
        local = config.batch_size // config.processes
        return {**impl().process_batches(prep.model, x, y, w, local), "shuffle": False}
    x, y = data.take("train", order)
    w = data.weights("train", order)
    for part in batch_slices(len(real), config.batch_size):  # the padding, if any, comes after them
        recorder.checksums.append(batch_checksum(*(_take_rows(tree, part) for tree in (x, y, w))))
    w = w if padding is None else padding
    return {"x": x, "y": y, "batch_size": config.batch_size, "shuffle": False, "sample_weight": w}


def _note_global_batches(order, config: RunSpec, recorder: InputRecorder) -> None:
    """Under ``--processes``: each step's checksum is of its global batch's sample numbers in backendlab's
    seeded order, which every process knows; no process reads another's rows to prove what it was fed."""
    for part in batch_slices(len(order), config.batch_size):
        rows = np.asarray(order[part], dtype=np.int64)
        recorder.checksums.append(batch_checksum(rows, rows[:0]))


def epoch_batches(prep: Prepared, order, recorder: InputRecorder):
    """One epoch's ``(x, y, sample_weight, shares)`` for the custom loop: the pipeline's batches, or
    backendlab's in ``order`` (``sample_weight`` None where the data has none). Under ``--processes``,
    ``x, y, sample_weight`` are this process's share of each global batch and ``shares`` every
    process's share size (None otherwise)."""
    config, data = prep.config, prep.data
    if data.pipeline:
        for batch in recorder.epoch(data.kind, data.pipeline.source):
            yield (*split_batch(batch), None)
        return
    if config.processes > 1:
        _note_global_batches(order, config, recorder)
    for part in batch_slices(len(order), config.batch_size):
        if config.processes > 1:
            own = own_share(order[part], config)
            shares = [len(own_share(order[part], config, r)) for r in range(config.processes)]
            # A share left empty (a last batch smaller than the world) trains on its first row, weighted 0.
            x, y, w = take_own(data, own if len(own) else own_share(order, config)[:1])
        else:
            shares = None
            x, y = data.take("train", order[part])
            w = data.weights("train", order[part])
            recorder.checksums.append(batch_checksum(x, y, w))
        yield x, y, w, shares
