"""Datasets: bundled, synthetic and a user's own, all offline."""

from __future__ import annotations

import numpy as np
import pytest

from backendlab.data import DATASETS, Target, from_arrays, infer_target, load_dataset
from backendlab.errors import UsageError


def test_breast_cancer_is_standardized_stratified_and_seeded():
    d = load_dataset("breast_cancer", seed=0)
    assert d.x_train.shape == (455, 30) and d.x_test.shape == (114, 30)
    assert np.allclose(d.x_train.mean(0), 0, atol=1e-5) and np.allclose(d.x_train.std(0), 1, atol=1e-3)
    assert abs(d.y_train.mean() - d.y_test.mean()) < 0.02  # stratified
    assert np.array_equal(d.y_test, load_dataset("breast_cancer", seed=0).y_test)
    assert not np.array_equal(d.y_test, load_dataset("breast_cancer", seed=1).y_test)
    assert d.target == Target("binary", 1)


def test_digits_are_8x8_images_with_a_channel():
    d = load_dataset("digits")
    assert d.x_train.shape[1:] == (8, 8, 1) and d.x_train.max() <= 1.0
    assert d.target == Target("multiclass", 10)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_bundled_data_are_float32_or_int32_ids_and_deterministic(name):
    a, b = load_dataset(name, seed=3), load_dataset(name, seed=3)
    xa = a.x_train if isinstance(a.x_train, dict) else {"x": a.x_train}
    xb = b.x_train if isinstance(b.x_train, dict) else {"x": b.x_train}
    for key in xa:
        assert xa[key].dtype == (np.int32 if name in ("tokens", "next_tokens") else np.float32)
        assert np.array_equal(xa[key], xb[key])


def test_integer_features_stay_integers_as_int32():
    """Token ids above 2**24 survive (as float32 they would be rounded), and bool features become 0.0 and 1.0."""
    ids = np.array([[2**24 + 1, 3], [5, 2**30 + 7]], dtype="int64")
    flags = np.array([[True], [False]])
    d = from_arrays(
        "ids", ({"ids": ids, "flags": flags}, np.array([0, 1])), ({"ids": ids, "flags": flags}, np.array([1, 0]))
    )
    assert d.x_train["ids"].dtype == np.int32 and d.x_train["ids"][0, 0] == 2**24 + 1
    assert d.x_train["flags"].dtype == np.float32 and d.x_train["flags"].tolist() == [[1.0], [0.0]]


def test_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(
        path,
        x_train=rng.normal(size=(20, 3)),
        y_train=rng.integers(0, 5, 20),
        x_test=rng.normal(size=(5, 3)),
        y_test=rng.integers(0, 5, 5),
    )
    d = load_dataset(str(path))
    assert d.x_train.dtype == np.float32 and d.target == Target("multiclass", 5)


def test_npz_missing_keys(tmp_path):
    path = tmp_path / "half.npz"
    np.savez(path, x_train=np.zeros((2, 2)), y_train=np.zeros(2))
    with pytest.raises(UsageError) as err:
        load_dataset(str(path))
    assert (
        str(err.value)
        == f"data file {str(path)!r} lacks x_test, y_test: an .npz needs x_train, y_train, x_test, y_test"
    )


@pytest.mark.parametrize(
    "y, target",
    [
        (np.array([0, 1, 1, 0]), Target("binary", 1)),
        (np.array([0.0, 1.0, 1.0]), Target("binary", 1)),
        (np.array([0, 3, 2]), Target("multiclass", 4)),
        (np.eye(3)[[0, 2, 1, 1]], Target("onehot", 3)),
        (np.array([0.5, 1.2]), Target("regression", 1)),
        (np.zeros((4, 2)) + 0.3, Target("regression", 2)),
    ],
)
def test_targets_are_read_off_the_labels(y, target):
    assert infer_target(y, "y") == target
