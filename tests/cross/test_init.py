"""Portable starting weights: the same seed gives the same start on every backend (backendlab.init).

In-process tests run on the active backend and assert facts about the values; the `cross` test
runs every backend in its own process and asserts that they print the same checksums.
"""

from __future__ import annotations

import sys

import numpy as np
from helpers import FIXTURES, HAS_KERAS_HUB, on_backends

from backendlab.backends import BACKEND_NAMES
from backendlab.models import HUB_MODELS, MODELS

sys.path.insert(0, str(FIXTURES))

from portable_models import BUILDERS  # noqa: E402


def values(model, path: str) -> np.ndarray:
    return next(np.asarray(v.numpy()) for v in model.weights if v.path.endswith(path))


#: The zoo models this environment can build (bert and gpt need keras_hub).
ZOO_NAMES = [name for name in MODELS if HAS_KERAS_HUB or name not in HUB_MODELS]

CHECKSUMS = f"""
import sys
import keras
sys.path.insert(0, {str(FIXTURES)!r})
from portable_models import BUILDERS
from backendlab.data import load_dataset
from backendlab.init import portable_init
from backendlab.models import build_model, default_data

models = {{name: (lambda n=name: build_model(n, load_dataset(default_data(n), 0))) for name in {ZOO_NAMES!r}}}
starts = {{name: portable_init(build(), seed=7) for name, build in {{**models, **BUILDERS}}.items()}}
printed = {{name: [start.checksum, start.note] for name, start in starts.items()}}
result = {{"backend": keras.backend.backend(), **printed}}
"""


def test_every_backend_starts_every_model_from_the_same_weights(pool, tmp_path):
    printed = on_backends(pool, CHECKSUMS, tmp_path)
    for backend in BACKEND_NAMES:
        assert printed[backend].pop("backend") == backend
    reference = printed[BACKEND_NAMES[0]]
    assert set(reference) == set(ZOO_NAMES) | set(BUILDERS)
    assert all(note is None for _, note in reference.values()), reference
    for backend, checksums in printed.items():
        assert checksums == reference, backend
