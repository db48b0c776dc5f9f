"""Pipelines as inputs: tf.data, a torch DataLoader, a PyDataset and a generator function train the
seed MLP on every backend, compare proves every backend was fed the same batches, and an unseeded
shuffle is caught before any verdict on the model."""

from __future__ import annotations

import pytest
from helpers import pipeline


def test_a_generator_object_is_refused_with_what_to_return_instead(backend):
    from backendlab.errors import UsageError
    from backendlab.training import prepare

    with pytest.raises(UsageError, match=r"train is a generator, which can be read only once: return the function"):
        prepare("mlp", pipeline("generator_object"))


def test_batch_size_with_a_pipeline_is_a_one_line_error(backend):
    from backendlab.errors import UsageError
    from backendlab.training import prepare

    with pytest.raises(UsageError) as caught:
        prepare("mlp", pipeline("generator"), batch_size=8)
    assert str(caught.value) == (
        f"--batch-size 8 does not apply: data {pipeline('generator')!r} is a generator pipeline, "
        "which fixes its own batches; batch it in the pipeline instead"
    )


def test_a_generator_pipeline_trains_here_with_its_own_batches(backend):
    from backendlab.training import run_training

    result = run_training("mlp", pipeline("generator"), epochs=2, loop="custom")
    assert result.input_kind == "generator" and result.repeat_differs_at is None
    assert len(result.batch_checksums) == 8 and result.batch_checksums[:4] == result.batch_checksums[4:]
    assert 0.0 <= result.input_wait_s <= result.train_time_s
