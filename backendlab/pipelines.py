"""Input pipelines a data function may return instead of arrays, read the same way on every backend.

A data function returns ``(train, test)``; each is ``(x, y)`` arrays, as before, or a pipeline:

``tf.data``     a ``tf.data.Dataset`` of ``(x, y)`` batches
``DataLoader``  a ``torch.utils.data.DataLoader`` of ``(x, y)`` batches
``PyDataset``   a ``keras.utils.PyDataset`` whose ``__getitem__`` gives ``(x, y)`` batches
``generator``   a function that makes a generator of ``(x, y)`` batches (called once per epoch:
                a generator object itself can be read only once)

A batch may also carry sample weights, ``(x, y, sample_weight)``, as ``fit`` takes them; then
every batch of the pipeline does, and the weights are fed and checksummed with the batch.

A pipeline fixes its own batches and their order: backendlab neither batches nor shuffles it.
Every epoch reads it once, start to end, converts each batch to NumPy (what Keras's own data
adapters do on a backend that is not the pipeline's framework), checksums it, and feeds it to
the training step. Before training, the train pipeline is read once (to learn its steps and
labels), and a second pipeline, from a second call of the data function, once more: where the
two differ, the pipeline is not deterministic (a shuffle without a seed), found before any
backend's numbers are compared. The test pipeline is read once, into arrays, so that every
backend evaluates and predicts on the same samples.

This module imports no framework: a pipeline's kind is read off the modules already loaded
(the data function imported its framework), the array-api-compat way.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backendlab.errors import UsageError

ARRAYS = "arrays"
KINDS = (ARRAYS, "tf.data", "DataLoader", "PyDataset", "generator")


def _class(module: str, *path: str):
    """``module.path...`` if ``module`` is already imported, else None (nothing is imported here)."""
    obj = sys.modules.get(module)
    for name in path:
        obj = getattr(obj, name, None)
    return obj if isinstance(obj, type) else None


def pipeline_kind(obj: Any, where: str) -> str | None:
    """Which pipeline ``obj`` is (one of :data:`KINDS` but arrays), or None for anything else."""
    checks = (
        ("tf.data", _class("tensorflow", "data", "Dataset")),
        ("DataLoader", _class("torch.utils.data", "DataLoader")),
        ("PyDataset", _class("keras", "utils", "PyDataset")),
    )
    for kind, cls in checks:
        if cls is not None and isinstance(obj, cls):
            return kind
    if inspect.isgenerator(obj):
        raise UsageError(
            f"{where} is a generator, which can be read only once: return the function that makes it, "
            "so that each epoch (and each backend) reads it from the start"
        )
    if callable(obj) and not isinstance(obj, type):
        return "generator"
    return None


def numpy_tree(tree: Any) -> Any:
    """A batch (tensors, arrays, nested in tuples, lists and dicts) as NumPy arrays."""
    if isinstance(tree, dict):
        return {str(k): numpy_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return tuple(numpy_tree(v) for v in tree)
    return np.asarray(tree)


def leaves(tree: Any) -> list[np.ndarray]:
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in leaves(v)]
    return [tree]


def batch_checksum(x: Any, y: Any, sample_weight: Any = None) -> str:
    """A hash of every input, label and sample weight array's dtype, shape and bytes, and their float64 sum.

    Equal on two backends only if the train step was fed the very same numbers. Without sample
    weights, the checksum of ``(x, y)`` alone.
    """
    digest = hashlib.blake2b(digest_size=8)
    total = 0.0
    parts = (x, y) if sample_weight is None else (x, y, sample_weight)
    for leaf in leaves(parts):
        a = np.ascontiguousarray(leaf)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
        total += float(a.sum(dtype=np.float64))
    return f"{digest.hexdigest()} {total:.17g}"


def _raw_batches(kind: str, source: Any) -> Iterator:
    if kind == "tf.data":
        return iter(source.as_numpy_iterator())
    if kind == "PyDataset":
        return _py_dataset_batches(source)
    if kind == "generator":
        made = source()
        if not isinstance(made, Iterator):
            raise UsageError(f"a generator pipeline's function returned {type(made).__name__}, not an iterator")
        return made
    return iter(source)


def _py_dataset_batches(dataset) -> Iterator:
    count = dataset.num_batches
    if count is None:
        raise UsageError("a PyDataset without a length never ends an epoch: give it __len__")
    dataset.on_epoch_begin()
    for index in range(count):
        yield dataset[index]
    dataset.on_epoch_end()


def split_batch(batch: tuple) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of a batch as a pipeline gives it; no weights: ``sample_weight`` is None."""
    return batch if len(batch) == 3 else (*batch, None)


def _parts(batch: tuple) -> str:
    return "(x, y, sample_weight)" if len(batch) == 3 else "(x, y)"


def numpy_batches(kind: str, source: Any) -> Iterator[tuple]:
    """One epoch of ``source``: its ``(x, y)`` or ``(x, y, sample_weight)`` batches as NumPy arrays,
    in its own order; every batch has the parts of the first."""
    first = None
    for step, batch in enumerate(_raw_batches(kind, source), start=1):
        batch = numpy_tree(batch)
        if not isinstance(batch, tuple) or len(batch) not in (2, 3):
            got = f"a tuple of {len(batch)}" if isinstance(batch, tuple) else type(batch).__name__
            raise UsageError(
                f"{kind} pipeline: batch {step} is {got}; backendlab needs (x, y) or (x, y, sample_weight) batches"
            )
        first = first or batch
        if len(batch) != len(first):
            raise UsageError(
                f"{kind} pipeline: batch {step} is {_parts(batch)} but batch 1 was {_parts(first)}: "
                "give every batch sample weights, or none"
            )
        yield batch


@dataclass
class InputRecorder:
    """Reads pipelines for a run: each batch's checksum, and the time spent waiting for it.

    ``wait_s`` counts the time inside the pipeline's ``next()`` (and the conversion to NumPy):
    the train step stalled on input for that long.
    """

    checksums: list[str] = field(default_factory=list)
    wait_s: float = 0.0
    record: bool = True  # False: time only (bench), no checksums

    def epoch(self, kind: str, source: Any, steps: int | None = None) -> Iterator[tuple]:
        """One epoch of ``source``, each batch ``(x, y)`` or ``(x, y, sample_weight)`` as the pipeline gives it
        (what ``fit`` takes); with ``steps``, the pipeline is read to its end before the last batch is given.

        fit stops asking after ``steps`` batches; a pipeline left unfinished can start its next epoch
        elsewhere (a DataLoader's RandomSampler draws once more from its generator at the end).
        """
        batches = numpy_batches(kind, source)
        given = 0
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            if steps is not None and given + 1 == steps:
                for _ in batches:  # to its end, as when it is read to StopIteration
                    pass
            self.wait_s += time.perf_counter() - start
            if self.record:
                self.checksums.append(batch_checksum(*batch))
            given += 1
            yield batch


def first_difference(a: list[str], b: list[str]) -> int | None:
    """The first step (from 1) where two checksum lists differ, a missing step counting; None: identical."""
    for step, (left, right) in enumerate(zip(a, b), start=1):
        if left != right:
            return step
    return None if len(a) == len(b) else min(len(a), len(b)) + 1


@dataclass
class Pipeline:
    """A train pipeline, as read once before training."""

    kind: str
    source: Any
    sizes: list[int]  # each batch's samples
    checksums: list[str]  # of that read
    weighted: bool = False  # its batches are (x, y, sample_weight)
    repeat_differs_at: int | None = None  # where a second pipeline from the data function read differently

    @property
    def steps(self) -> int:
        return len(self.sizes)


def batch_size_of(x: Any) -> int:
    return len(leaves(x)[0])


def read_train(kind: str, source: Any, where: str) -> tuple[Pipeline, tuple, list, list]:
    """Read the train pipeline once: the :class:`Pipeline`, its first batch (as it came), and every
    batch's labels and sample weights (None each, where the batches have none)."""
    recorder = InputRecorder()
    sizes, labels, weights, first = [], [], [], None
    for batch in recorder.epoch(kind, source):
        x, y, w = split_batch(batch)
        first = first or batch
        sizes.append(batch_size_of(x))
        labels.append(y)
        weights.append(w)
    if first is None:
        raise UsageError(f"{where} gave no batch: the train pipeline needs at least one")
    pipeline = Pipeline(kind, source, sizes, recorder.checksums, weighted=len(first) == 3)
    return pipeline, first, labels, weights


def read_all(kind: str, source: Any, where: str) -> tuple[Any, Any, Any]:
    """A (test) pipeline read once, its batches concatenated into (x, y, sample_weight) arrays
    (``sample_weight`` None where the batches have none)."""
    batches = list(numpy_batches(kind, source))
    if not batches:
        raise UsageError(f"{where} gave no batch: the test pipeline needs at least one")
    return split_batch(tuple(concat([b[i] for b in batches]) for i in range(len(batches[0]))))


def concat(trees: list) -> Any:
    if isinstance(trees[0], dict):
        return {k: concat([t[k] for t in trees]) for k in trees[0]}
    if isinstance(trees[0], tuple):
        return tuple(concat([t[i] for t in trees]) for i in range(len(trees[0])))
    return np.concatenate(trees)


def make_pipeline(kind: str, parts: tuple, batch_size: int) -> Any:
    """Arrays ``(x, y)`` or ``(x, y, sample_weight)`` as a pipeline of ``kind``, in batches of
    ``batch_size``, in order (bench's inputs).

    Imports the pipeline's framework: call it in a worker.
    """
    if kind == "tf.data":
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices(tuple(parts)).batch(batch_size)
    if kind == "DataLoader":
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        return DataLoader(TensorDataset(*(torch.from_numpy(a) for a in parts)), batch_size=batch_size)
    if kind == "PyDataset":
        return _array_batches_class()(parts, batch_size)
    if kind == "generator":

        def batches():
            for start in range(0, len(parts[0]), batch_size):
                yield tuple(a[start : start + batch_size] for a in parts)

        return batches
    raise UsageError(f"unknown pipeline {kind!r}: use one of {', '.join(KINDS)}")


def _array_batches_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self, parts, batch_size):
            super().__init__()
            self.parts, self.batch_size = parts, batch_size

        def __len__(self):
            return -(-len(self.parts[0]) // self.batch_size)

        def __getitem__(self, index):
            part = slice(index * self.batch_size, (index + 1) * self.batch_size)
            return tuple(a[part] for a in self.parts)

    return ArrayBatches
