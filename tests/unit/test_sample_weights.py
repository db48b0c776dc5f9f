"""Sample weights in users' data, without a framework: how a data function's (x, y, w) and a pipeline's
(x, y, w) batches are read and checked, the checksum that proves every backend was fed them, and the
one line a wrong shape gets."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES

from backendlab.compare.facts import batches_proof
from backendlab.compare.verdict import TrainedRun
from backendlab.data import from_arrays, load_dataset
from backendlab.errors import UsageError
from backendlab.pipelines import batch_checksum, numpy_batches
from backendlab.workers.protocol import Outcome

W = FIXTURES / "weighted_data.py"


def _error(spec: str) -> str:
    with pytest.raises(UsageError) as err:
        load_dataset(spec)
    return str(err.value)


def test_arrays_with_sample_weights_load_with_them():
    data = load_dataset(f"{W}:arrays")
    assert data.weighted and data.w_train.dtype == np.float32
    assert data.w_train.shape == (64,) and data.w_test.shape == (32,)
    assert set(np.unique(data.w_train)) == {0.0, 0.5, 1.0, 4.0}
    np.testing.assert_array_equal(data.weights("train", np.array([3, 1])), data.w_train[[3, 1]])
    plain = load_dataset(f"{W}:unweighted")
    assert not plain.weighted and plain.weights("train", np.arange(2)) is None


def test_a_pipeline_of_weighted_batches_is_read_with_its_weights():
    data = load_dataset(f"{W}:generator")
    assert data.kind == "generator" and data.pipeline.weighted and data.weighted
    assert data.pipeline.steps == 4 and data.w_test.shape == (32,)
    arrays = load_dataset(f"{W}:arrays")  # the same samples, in the generator's order
    first = batch_checksum(arrays.x_train[:16], arrays.y_train[:16], arrays.w_train[:16])
    assert data.pipeline.checksums[0] == first  # the weights are in every step's checksum


def test_the_checksum_covers_the_weights_and_is_unchanged_without_them():
    x, y, w = np.ones((4, 2), "float32"), np.arange(4, dtype="int32"), np.ones(4, "float32")
    assert batch_checksum(x, y, None) == batch_checksum(x, y)
    changed = w.copy()
    changed[2] = 0.5
    assert batch_checksum(x, y, w) != batch_checksum(x, y, changed) != batch_checksum(x, y)


def test_a_split_of_four_arrays_is_one_clear_line():
    assert _error(f"{W}:four_parts") == (
        f"data '{W}:four_parts': train is a tuple of 4: give (x_train, y_train), (x_train, y_train, w_train) "
        "with sample weights, or a pipeline (tf.data, DataLoader, PyDataset, a function making a generator)"
    )


def test_one_weight_per_sample():
    assert _error(f"{W}:too_few_weights") == (
        f"data '{W}:too_few_weights': w_train has 63 sample weights for 64 samples: give one weight per sample"
    )


def test_weights_are_finite_and_keyed_like_the_labels():
    x, y = np.zeros((3, 2)), np.zeros(3)
    with pytest.raises(UsageError) as err:
        from_arrays("mine", (x, y, np.array([1.0, np.nan, 1.0])), (x, y))
    assert str(err.value) == (
        "data 'mine': w_train has NaN at index 1: remove or replace non-finite values before training"
    )
    with pytest.raises(UsageError) as err:
        from_arrays("mine", (x, {"a": y, "b": y}, {"a": np.ones(3)}), (x, {"a": y, "b": y}))
    assert str(err.value) == (
        "data 'mine': w_train is a dict of ['a'] but y_train has outputs ['a', 'b']: "
        "key the sample weights like the labels, or give one array for every output"
    )
    both = from_arrays("mine", (x, {"a": y, "b": y}, np.ones(3)), (x, {"a": y, "b": y}))
    assert both.w_train.shape == (3,) and both.w_test is None  # one array weighs every output, as in fit


def test_npz_files_may_hold_sample_weights(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "weighted.npz"
    np.savez(path, x_train=rng.normal(size=(8, 3)), y_train=rng.integers(0, 2, 8), w_train=rng.uniform(size=8),
             x_test=rng.normal(size=(4, 3)), y_test=rng.integers(0, 2, 4))  # fmt: skip
    data = load_dataset(str(path))
    assert data.weighted and data.w_train.dtype == np.float32 and data.w_test is None


def _generator(*batches):
    return lambda: iter(batches)


def test_a_pipeline_gives_every_batch_weights_or_none():
    x, y, w = np.zeros((2, 3)), np.zeros(2), np.ones(2)
    with pytest.raises(UsageError) as err:
        list(numpy_batches("generator", _generator((x, y, w), (x, y))))
    assert str(err.value) == (
        "generator pipeline: batch 2 is (x, y) but batch 1 was (x, y, sample_weight): "
        "give every batch sample weights, or none"
    )
    with pytest.raises(UsageError) as err:
        list(numpy_batches("generator", _generator((x, y, w, w))))
    assert str(err.value) == (
        "generator pipeline: batch 1 is a tuple of 4; backendlab needs (x, y) or (x, y, sample_weight) batches"
    )


def _run(backend: str, checksums: list[str], weighted: bool) -> TrainedRun:
    result = {"batch_checksums": checksums, "input_kind": "arrays", "sample_weights": ["train"] if weighted else []}
    return TrainedRun(Outcome(backend, "ok", 0, 1.0, result, "", ""), {})


def test_the_batches_proof_says_the_weights_were_fed_and_finds_a_difference_in_them():
    x, y, w = np.ones((4, 2), "float32"), np.zeros(4, "int32"), np.ones(4, "float32")
    same = [batch_checksum(x, y, w)] * 2
    proof = batches_proof({b: _run(b, same, True) for b in ("jax", "torch")}, ["jax", "torch"], "jax")
    assert proof["identical"] and proof["sample_weights"] is True
    assert proof["message"] == "every backend was fed the same arrays batches and sample weights at all 2 steps"
    other = [same[0], batch_checksum(x, y, w * 2)]
    trained = {"jax": _run("jax", same, True), "torch": _run("torch", other, True)}
    proof = batches_proof(trained, ["jax", "torch"], "jax")
    assert not proof["identical"] and proof["first_differing_step"] == 2 and proof["differing_backend"] == "torch"
