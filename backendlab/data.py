"""Datasets that need no network: scikit-learn's bundled ones, seeded synthetic ones, a user's own.

A dataset is NumPy arrays (or dicts of them, for several inputs or outputs) and a
description of each target, from which the default loss and metrics follow.

A user's data function (``file.py:function`` or ``module:function``) returns ``(train, test)``.
Each is ``(x, y)`` arrays, or a pipeline (:mod:`backendlab.pipelines`): a ``tf.data.Dataset``,
a torch ``DataLoader``, a ``keras.utils.PyDataset`` or a function making a generator, each
giving ``(x, y)`` batches. With a train pipeline, ``x_train``/``y_train`` hold its first batch
(to build the model on) and ``pipeline`` the pipeline itself; a test pipeline is read into arrays.

Either split may carry sample weights, as ``fit(x, y, sample_weight=w)`` takes them: arrays
``(x, y, w)``, or a pipeline of ``(x, y, w)`` batches. ``w`` is one weight per sample, or per
sample and time step (the shape of the loss), or a dict of them keyed like ``y``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from backendlab.errors import UsageError
from backendlab.pipelines import ARRAYS, Pipeline, first_difference, pipeline_kind, read_all, read_train
from backendlab.specs import call_user, check_spec, is_callable_spec, load_callable


@dataclass(frozen=True)
class Target:
    """What one output must predict, and so its loss, metrics and output width."""

    kind: str  # binary | multiclass | onehot | regression
    units: int  # the last dimension the model's output must have

    @property
    def loss(self) -> str:
        return {
            "binary": "binary_crossentropy",
            "multiclass": "sparse_categorical_crossentropy",
            "onehot": "categorical_crossentropy",
            "regression": "mean_squared_error",
        }[self.kind]

    @property
    def metrics(self) -> list[str]:
        return ["mae"] if self.kind == "regression" else ["accuracy"]

    @property
    def activation(self) -> str:
        return {"binary": "sigmoid", "regression": "linear"}.get(self.kind, "softmax")

    def learned_by(self, units: int, probabilities: bool = False) -> Target | None:
        """This target as an output ``units`` wide learns it; None where it cannot. Two classes learn on
        one sigmoid unit, or on two units of probabilities (a softmax: ``probabilities``) as class ids
        (sparse categorical cross-entropy)."""
        if units == self.units:
            return self
        return Target("multiclass", 2) if self.kind == "binary" and units == 2 and probabilities else None

    def widths(self) -> str:
        """The last dimension an output may have, in words."""
        return "1 (or 2 softmax units)" if self.kind == "binary" else str(self.units)

    def describe(self) -> str:
        if self.kind == "binary":
            return "2 classes (binary)"
        if self.kind == "regression":
            return f"{self.units} regression value(s)"
        return f"{self.units} classes"


@dataclass
class Dataset:
    name: str
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    target: Target | dict[str, Target]
    pipeline: Pipeline | None = None  # a train pipeline; None: train on x_train, y_train in backendlab's order
    # Sample weights (None: none). With a train pipeline, w_train is its first batch's.
    w_train: Any = None
    w_test: Any = None

    @property
    def num_train(self) -> int:
        return sum(self.pipeline.sizes) if self.pipeline else _num_samples(self.x_train)

    @property
    def num_test(self) -> int:
        return _num_samples(self.x_test)

    @property
    def sample_rows(self) -> int:
        """The rows ``x_train`` holds: every train sample, or a train pipeline's first batch."""
        return _num_samples(self.x_train)

    @property
    def weighted(self) -> bool:
        """Whether training is fed sample weights."""
        return self.pipeline.weighted if self.pipeline else self.w_train is not None

    @property
    def kind(self) -> str:
        """What the train split is: ``arrays``, or the pipeline's kind (tf.data, DataLoader, PyDataset, generator)."""
        return self.pipeline.kind if self.pipeline else ARRAYS

    def loss(self):
        return _per_output(self.target, lambda t: t.loss)

    def metrics(self):
        return _per_output(self.target, lambda t: t.metrics)

    def take(self, split: str, index: np.ndarray) -> tuple[Any, Any]:
        """The rows ``index`` of ``split`` ("train" or "test"), as (x, y)."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        return _map(lambda a: a[index], x), _map(lambda a: a[index], y)

    def weights(self, split: str, index: np.ndarray) -> Any:
        """The sample weights of the rows ``index`` of ``split``; None where the split has none."""
        w = self.w_train if split == "train" else self.w_test
        return None if w is None else _map(lambda a: a[index], w)


def _per_output(target, fn):
    return {k: fn(t) for k, t in target.items()} if isinstance(target, dict) else fn(target)


def _map(fn: Callable, tree: Any) -> Any:
    return {k: fn(v) for k, v in tree.items()} if isinstance(tree, dict) else fn(tree)


def _leaves(tree: Any) -> list[np.ndarray]:
    return list(tree.values()) if isinstance(tree, dict) else [tree]


def _num_samples(tree: Any) -> int:
    return len(_leaves(tree)[0])


# --- bundled and synthetic data ------------------------------------------------------


def _split(x, y, seed: int, stratify=None):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=stratify)


def breast_cancer(seed: int = 0) -> Dataset:
    """scikit-learn's Wisconsin breast cancer data: 30 features, standardized on the train split."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = _split(x, y, seed, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return Dataset(
        "breast_cancer",
        scaler.transform(x_train).astype("float32"),
        y_train.astype("int32"),
        scaler.transform(x_test).astype("float32"),
        y_test.astype("int32"),
        Target("binary", 1),
    )


def digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digit images, scaled to [0, 1], with a channel axis."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype("float32")[..., None]
    y = bunch.target.astype("int32")
    x_train, x_test, y_train, y_test = _split(x, y, seed, stratify=y)
    return Dataset("digits", x_train, y_train, x_test, y_test, Target("multiclass", 10))


def sequences(seed: int = 0, n: int = 640, steps: int = 16, features: int = 8) -> Dataset:
    """Seeded sequences; the class is the feature channel with the largest mean, of the first 4."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, features)).astype("float32")
    y = rng.integers(0, 4, size=n)
    x[np.arange(n), :, y] += 0.5  # plant the signal along the whole sequence
    y = y.astype("int32")
    x_train, x_test, y_train, y_test = _split(x, y, seed, stratify=y)
    return Dataset("sequences", x_train, y_train, x_test, y_test, Target("multiclass", 4))


def pairs(seed: int = 0, n: int = 640, features: int = 12) -> Dataset:
    """Seeded two-input, two-output data for the Functional model.

    ``label`` (3 classes) depends on both inputs; ``score`` is a noisy linear function of them.
    """
    rng = np.random.default_rng(seed)
    left = rng.normal(size=(n, features)).astype("float32")
    right = rng.normal(size=(n, features)).astype("float32")
    w = rng.normal(size=features)
    s = left @ w - right @ w
    label = np.digitize(s, np.quantile(s, [1 / 3, 2 / 3])).astype("int32")
    score = (0.3 * s + 0.1 * rng.normal(size=n)).astype("float32")[:, None]
    idx_train, idx_test = _split(np.arange(n), label, seed, stratify=label)[:2]

    def part(idx):
        return {"left": left[idx], "right": right[idx]}, {"label": label[idx], "score": score[idx]}

    (xtr, ytr), (xte, yte) = part(idx_train), part(idx_test)
    return Dataset("pairs", xtr, ytr, xte, yte, {"label": Target("multiclass", 3), "score": Target("regression", 1)})


def images(seed: int = 0, n: int = 160, side: int = 32, classes: int = 4) -> Dataset:
    """Seeded 32x32 RGB images in [0, 1]; the class is the colour channel lifted in a centred square (or none)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.6, size=(n, side, side, 3)).astype("float32")
    y = rng.integers(0, classes, size=n)
    lo, hi = side // 4, 3 * side // 4
    for c in range(3):
        x[y == c, lo:hi, lo:hi, c] += 0.4
    y = y.astype("int32")
    x_train, x_test, y_train, y_test = _split(x, y, seed, stratify=y)
    return Dataset("images", x_train, y_train, x_test, y_test, Target("multiclass", classes))


#: The token data's vocabulary and sequence length (the bert and gpt models are sized from the data).
VOCABULARY, SEQUENCE = 64, 16


def tokens(seed: int = 0, n: int = 160) -> Dataset:
    """Seeded token-id sequences for a text classifier: the class is whether token 1 occurs more often than token 2."""
    rng = np.random.default_rng(seed)
    x = rng.integers(3, VOCABULARY, size=(n, SEQUENCE))
    y = rng.integers(0, 2, size=n)
    x[np.arange(n), rng.integers(0, SEQUENCE, size=n)] = np.where(y == 1, 1, 2)  # plant the signal
    x_train, x_test, y_train, y_test = _split(x.astype("int32"), y.astype("int32"), seed, stratify=y)
    return Dataset("tokens", x_train, y_train, x_test, y_test, Target("binary", 1))


def next_tokens(seed: int = 0, n: int = 160) -> Dataset:
    """Seeded sequences for a causal language model: y is x shifted by one; each sequence counts up modulo
    the vocabulary from a random start, with random tokens mixed in, so the next token is mostly predictable."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, VOCABULARY, size=(n, 1))
    seq = (start + np.arange(SEQUENCE + 1)) % VOCABULARY
    noise = rng.random(size=seq.shape) < 0.1
    seq = np.where(noise, rng.integers(0, VOCABULARY, size=seq.shape), seq).astype("int32")
    x_train, x_test, y_train, y_test = _split(seq[:, :-1], seq[:, 1:], seed)
    return Dataset("next_tokens", x_train, y_train, x_test, y_test, Target("multiclass", VOCABULARY))


DATASETS: dict[str, Callable[[int], Dataset]] = {
    "breast_cancer": breast_cancer,
    "digits": digits,
    "sequences": sequences,
    "pairs": pairs,
    "images": images,
    "tokens": tokens,
    "next_tokens": next_tokens,
}


# --- a user's data ------------------------------------------------------------------


def infer_target(y: np.ndarray, where: str) -> Target:
    """What a user's label array asks for, read off its dtype, shape and values."""
    y = np.asarray(y)
    if y.ndim == 0:
        raise UsageError(f"{where} is a scalar: labels need one row per sample")
    flat = y.reshape(len(y), -1)
    integral = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)
    if not integral and np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
        integral = flat.shape[1] == 1 or np.all(flat.sum(axis=1) == 1)
    if integral and flat.shape[1] == 1:
        values = np.unique(flat)
        if values.min() < 0:
            raise UsageError(f"{where} has negative class labels: use labels 0..k-1")
        return Target("binary", 1) if values.max() <= 1 else Target("multiclass", int(values.max()) + 1)
    if integral and np.all(flat.sum(axis=1) == 1):
        return Target("onehot", flat.shape[1])
    return Target("regression", flat.shape[1])


PARTS = ("x_train", "y_train", "x_test", "y_test")
WEIGHTS = ("w_train", "w_test")  # optional: None where a split has no sample weights
NUMERIC_KINDS = "biuf"  # numpy dtype kinds: bool, signed and unsigned integer, float


def _as_arrays(tree: Any, where: str, labels: bool) -> Any:
    """``tree`` (an array or a dict of them) as checked NumPy arrays; ``where`` names it in errors."""
    if isinstance(tree, dict):
        if not tree:
            raise UsageError(f"{where} is an empty dict: give one array per input or output")
        return {str(k): _as_arrays(v, f"{where}[{k!r}]", labels) for k, v in tree.items()}
    try:
        a = np.asarray(tree)
    except Exception as exc:
        raise UsageError(f"{where} is not an array: {exc}") from exc
    return _checked_leaf(a, where, labels)


def _checked_leaf(a: np.ndarray, where: str, labels: bool) -> np.ndarray:
    """One array: numeric, one row per sample, finite; cast to the dtype every backend gets."""
    if a.dtype.kind not in NUMERIC_KINDS:
        raise UsageError(
            f"{where} has dtype {a.dtype}: backendlab trains on bool, integer and float arrays: "
            "encode strings and objects as numbers first"
        )
    if a.ndim == 0:
        raise UsageError(f"{where} is a scalar: give an array with one row per sample")
    # Integers stay integers, as int32 on every backend (JAX has no int64 by default): labels are
    # classes, and integer features are ids that an Embedding or a lookup layer takes as they are (as
    # float32 they lose ids above 2**24, and a lookup layer refuses them on JAX). Float features
    # become float32, as a float32 Keras input casts them anyway; bool labels are classes, bool
    # features become 0.0 and 1.0.
    integer = a.dtype.kind in "iu" or (labels and a.dtype.kind == "b")
    a = a.astype("int32" if integer else "float32", copy=False)
    _check_finite(a, where)
    return a


def _check_finite(a: np.ndarray, where: str) -> None:
    """Refuse NaN and inf, naming the first one's index: training on them fails on every backend."""
    bad = ~np.isfinite(a) if a.dtype.kind == "f" else None
    if bad is None or not bad.any():
        return
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad.reshape(-1))), a.shape))
    value = a[index]
    word = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    shown = index[0] if len(index) == 1 else index
    raise UsageError(f"{where} has {word} at index {shown}: remove or replace non-finite values before training")


def _check_split(name: str, split: str, arrays: dict[str, Any]) -> None:
    """x and y (and w) of one split hold the same number of samples, and at least one."""
    counts = {len(a) for key in (f"x_{split}", f"y_{split}") for a in _leaves(arrays[key])}
    if len(counts) != 1:
        raise UsageError(f"data {name!r}: x_{split} and y_{split} have different numbers of samples {sorted(counts)}")
    if arrays.get(f"w_{split}") is not None:
        _check_weights(name, split, arrays[f"w_{split}"], arrays[f"y_{split}"])
    if counts == {0}:
        raise UsageError(
            f"data {name!r}: x_{split} and y_{split} have no samples: the train and test splits each need at least one"
        )


def _check_weights(name: str, split: str, w: Any, y: Any, where: str | None = None) -> None:
    """Sample weights fit their labels as ``fit`` takes them: one per sample (or per sample and step),
    for every output alike, or a dict keyed like ``y``."""
    where = where or f"data {name!r}: w_{split}"
    if isinstance(w, dict):
        if not isinstance(y, dict) or set(w) != set(y):
            outputs = f"outputs {sorted(y)}" if isinstance(y, dict) else "one output"
            raise UsageError(
                f"{where} is a dict of {sorted(w)} but y_{split} has {outputs}: "
                "key the sample weights like the labels, or give one array for every output"
            )
        for key in w:
            _check_weights(name, split, w[key], y[key], f"{where}[{key!r}]")
        return
    samples = len(_leaves(y)[0])
    if len(w) != samples:
        raise UsageError(f"{where} has {len(w)} sample weights for {samples} samples: give one weight per sample")
    if isinstance(y, dict) and not (w.ndim == 1 or w.shape[1:] == (1,)):
        raise UsageError(
            f"{where} has shape {w.shape}, but one array for several outputs holds one weight per sample: "
            "give shape (samples,), or a dict of arrays keyed like the outputs"
        )


def _check_rows(name: str, arrays: dict[str, Any]) -> None:
    """Test rows are shaped like train rows, so a model built on one takes the other."""
    for part in ("x", "y"):
        train, test = (_map(lambda a: a.shape[1:], arrays[f"{part}_{split}"]) for split in ("train", "test"))
        if train != test:
            raise UsageError(
                f"data {name!r}: {part}_test has rows of shape {test} but {part}_train has {train}: "
                "give both splits the same shape per sample"
            )


def check_arrays(name: str, parts: dict[str, Any]) -> dict[str, Any]:
    """The gate every dataset passes, bundled or a user's: ``parts`` (x_train, y_train, x_test,
    y_test, and sample weights w_train, w_test where given) as numeric, finite NumPy arrays with
    matching, non-zero sample counts; features and weights float32, bool and integer labels int32,
    float labels float32. Anything else: one UsageError."""
    arrays = {key: _as_arrays(parts[key], f"data {name!r}: {key}", key.startswith("y")) for key in PARTS}
    for key in WEIGHTS:
        given = parts.get(key)
        arrays[key] = None if given is None else _as_arrays(given, f"data {name!r}: {key}", labels=False)
    for split in ("train", "test"):
        _check_split(name, split, arrays)
    _check_rows(name, arrays)
    return arrays


def validate(dataset: Dataset) -> Dataset:
    """``dataset`` with its arrays checked and cast by ``check_arrays``."""
    return replace(dataset, **check_arrays(dataset.name, {key: getattr(dataset, key) for key in PARTS + WEIGHTS}))


def _targets(name: str, y: Any) -> Target | dict[str, Target]:
    if isinstance(y, dict):
        return {k: infer_target(v, f"data {name!r}: y_train[{k!r}]") for k, v in y.items()}
    return infer_target(y, f"data {name!r}: y_train")


def _with_weights(split: tuple | list) -> tuple[Any, Any, Any]:
    """``(x, y, w)`` of a split given as ``(x, y)`` or ``(x, y, w)``; ``w`` None where not given."""
    return (*split, None) if len(split) == 2 else tuple(split)


def from_arrays(name: str, train: tuple, test: tuple) -> Dataset:
    """A dataset from ``(x_train, y_train), (x_test, y_test)``, each split optionally with its sample
    weights as a third array; checked, with targets read off the labels."""
    (x_train, y_train, w_train), (x_test, y_test, w_test) = _with_weights(train), _with_weights(test)
    parts = dict(zip(PARTS + WEIGHTS, (x_train, y_train, x_test, y_test, w_train, w_test)))
    arrays = check_arrays(name, parts)
    return Dataset(name, **arrays, target=_targets(name, arrays["y_train"]))


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """``np.load`` without pickles: a file that is not an .npz archive is refused, never unpickled."""
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception:  # not a zip: numpy says "pickled data", or "no data left" for an empty file
        npz = None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # an .npy file under an .npz name loads as one array
        raise UsageError(
            f"data file {str(path)!r} is not an .npz archive: "
            "write it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
        )
    return npz


def _npz_array(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except Exception as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):  # numpy's refusal of an object array
            raise UsageError(
                f"data file {str(path)!r}: {key} is an object array, and backendlab loads .npz files "
                "without pickles: save plain numeric arrays"
            ) from None
        raise UsageError(
            f"data file {str(path)!r}: {key} cannot be read: write the file again with numpy.savez"
        ) from exc


def _open_parts(path: Path) -> np.lib.npyio.NpzFile:
    """The ``.npz`` file at ``path``, holding the four parts; reads the archive's index, not its arrays."""
    if not path.is_file():
        raise UsageError(f"data file {str(path)!r} does not exist")
    npz = _open_npz(path)
    missing = [k for k in PARTS if k not in npz.files]
    if missing:
        npz.close()
        raise UsageError(
            f"data file {str(path)!r} lacks {', '.join(missing)}: an .npz needs x_train, y_train, x_test, y_test"
        )
    return npz


def _from_npz(path: Path) -> Dataset:
    with _open_parts(path) as npz:
        x_train, y_train, x_test, y_test = (_npz_array(npz, key, path) for key in PARTS)
        # Optional sample weights, as fit takes them.
        w_train, w_test = (_npz_array(npz, key, path) if key in npz.files else None for key in WEIGHTS)
    return from_arrays(path.name, (x_train, y_train, w_train), (x_test, y_test, w_test))


def _call_data_function(func: Callable, name: str) -> tuple[Any, Any]:
    """``(train, test)`` from a data function, called from the random state a fresh process has.

    backendlab seeds TensorFlow where it is loaded (under its own backend, or after an earlier
    run), and a fresh JAX or PyTorch worker has not imported it yet: a tf.data shuffle with an
    op seed would then draw another order on each backend. So TensorFlow's global seed is
    cleared first, as in a fresh import. Nothing else is seeded: an unseeded shuffle must still
    show up as one (:func:`from_pipelines` reads the pipeline twice).
    """
    tf_random = getattr(sys.modules.get("tensorflow"), "random", None)
    if tf_random is not None:
        tf_random.set_seed(None)
    return _splits(name, call_user(func, name, "data"))


def _splits(name: str, result: Any) -> tuple[Any, Any]:
    """``(train, test)`` from what a data function returned; each is (x, y), (x, y, sample_weight) or a pipeline."""
    try:
        train, test = result
    except (TypeError, ValueError):
        raise UsageError(
            f"data {name!r} must return ((x_train, y_train), (x_test, y_test)) or (train, test) pipelines "
            f"(tf.data, DataLoader, PyDataset, a function making a generator), got {type(result).__name__}"
        ) from None
    for part, split in (("train", train), ("test", test)):
        if pipeline_kind(split, f"data {name!r}: {part}") is not None:
            continue
        sequence = isinstance(split, (tuple, list))
        if not sequence or len(split) not in (2, 3):
            got = f"a {type(split).__name__} of {len(split)}" if sequence else type(split).__name__
            raise UsageError(
                f"data {name!r}: {part} is {got}: give (x_{part}, y_{part}), (x_{part}, y_{part}, w_{part}) with "
                "sample weights, or a pipeline (tf.data, DataLoader, PyDataset, a function making a generator)"
            )
    return train, test


def from_pipelines(name: str, train: Any, test: Any, again: Callable[[], Any]) -> Dataset:
    """A dataset on a train pipeline, read once before training (:func:`backendlab.pipelines.read_train`).

    ``again`` makes a second train pipeline (the data function called again): read once too, where it
    differs from the first the pipeline is not deterministic, and ``pipeline.repeat_differs_at`` says where.
    """
    kind = pipeline_kind(train, f"data {name!r}: train")
    pipeline, first, labels, weights = read_train(kind, train, f"data {name!r}: train")
    second = read_train(kind, again(), f"data {name!r}: train")[0]
    pipeline.repeat_differs_at = first_difference(pipeline.checksums, second.checksums)
    test_kind = pipeline_kind(test, f"data {name!r}: test")
    x_test, y_test, w_test = read_all(test_kind, test, f"data {name!r}: test") if test_kind else _with_weights(test)
    x_first, y_first, w_first = _with_weights(first)
    parts = dict(zip(PARTS + WEIGHTS, (x_first, y_first, x_test, y_test, w_first, w_test)))
    arrays = check_arrays(name, parts)
    all_labels = _concat(labels)
    _as_arrays(all_labels, f"data {name!r}: y_train", labels=True)  # numeric and finite, every batch
    if pipeline.weighted:  # every batch's weights: numeric, finite, one per sample
        all_weights = _as_arrays(_concat(weights), f"data {name!r}: w_train", labels=False)
        _check_weights(name, "train", all_weights, all_labels)
    return Dataset(name, **arrays, target=_targets(name, all_labels), pipeline=pipeline)


def _concat(batches: list) -> Any:
    if isinstance(batches[0], dict):
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    return np.concatenate(batches)


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """A bundled dataset by name, an ``.npz`` file, or ``file.py:function`` / ``module:function``."""
    if name in DATASETS:
        return validate(DATASETS[name](seed))
    if name.endswith(".npz"):
        return _from_npz(Path(name))
    if is_callable_spec(name):
        func = load_callable(name, "data")
        train, test = _call_data_function(func, name)
        if pipeline_kind(train, f"data {name!r}: train") is None:
            return from_arrays(name, train, test)
        return from_pipelines(name, train, test, again=lambda: _call_data_function(func, name)[0])
    raise UsageError(_unknown_dataset(name))


def _unknown_dataset(name: str) -> str:
    return (
        f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}, an .npz file, "
        "or path/to/file.py:function / package.module:function"
    )


def check_data(name: str | None) -> None:
    """What :func:`load_dataset` would refuse at once, told before any framework is imported: an unknown
    name, a missing ``.npz`` file or one without the four parts, a function's file or package that is
    missing, does not parse or has no such function (``check_spec``). None: the model's own data."""
    if name is None or name in DATASETS:
        return
    if name.endswith(".npz"):
        _open_parts(Path(name)).close()
    elif is_callable_spec(name):
        check_spec(name, "data")
    else:
        raise UsageError(_unknown_dataset(name))
