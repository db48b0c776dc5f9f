"""Pipelines as inputs: tf.data, a torch DataLoader, a PyDataset and a generator function train the
seed MLP on every backend, compare proves every backend was fed the same batches, and an unseeded
shuffle is caught before any verdict on the model."""

from __future__ import annotations

import pytest
from helpers import pipeline


def test_processes_with_a_pipeline_is_a_one_line_error(backend):
    from backendlab.data import load_dataset
    from backendlab.errors import UsageError
    from backendlab.runspec import RunSpec
    from backendlab.training import check_pipeline_options

    spec = RunSpec(model="mlp", data=pipeline("generator"), processes=2)
    with pytest.raises(UsageError) as caught:
        check_pipeline_options(spec, load_dataset(spec.data, spec.seed), given_batch_size=False)
    assert str(caught.value) == (
        f"--processes 2 takes arrays: data {pipeline('generator')!r} is a generator pipeline, which fixes its own "
        "batches, and backendlab shares out only its own batches"
    )
