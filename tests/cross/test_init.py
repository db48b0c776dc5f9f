"""Portable starting weights: the same seed gives the same start on every backend (backendlab.init).

In-process tests run on the active backend and assert facts about the values; the `cross` test
runs every backend in its own process and asserts that they print the same checksums.
"""

from __future__ import annotations

import sys
import zipfile

import numpy as np
from helpers import FIXTURES, HAS_KERAS_HUB, on_backends, report_json

from backendlab.backends import BACKEND_NAMES
from backendlab.compare import compare
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


def _normalization_state(h5) -> list[np.ndarray]:
    """A Keras weights file's Normalization variables (mean, variance, count), as saved."""
    import h5py

    found = []
    with h5py.File(h5, "r") as f:
        f.visititems(lambda name, obj: found.append(obj[()]) if "normalization/vars/" in name else None)
    return found


def test_compare_keeps_what_the_model_factory_adapted_and_loaded(pool, tmp_path):
    """A Normalization adapted and a layer given weights in the factory: the shared start keeps both, everywhere."""
    import adapted_models

    spec = FIXTURES / "adapted_models.py"
    report = compare(
        model=f"{spec}:build", data=f"{spec}:data", epochs=1, out=str(tmp_path), pool=pool, portability=False
    )
    details = {b: (r.status, r.verdict, r.message) for b, r in report.backends.items()}
    assert report.verdict == "agree" and report.criterion.kind == "exact", details
    assert len({r.initial_checksum for r in report.backends.values()}) == 1
    assert max(r.differences["step_losses"].max_rel for r in report.backends.values() if r.differences) <= 1e-5
    start = report_json(tmp_path)["start"]
    assert start["made_by"] == BACKEND_NAMES[0] and start["fallback"] == []
    assert [p.split("/")[-2:] for p in start["kept"]] == [
        ["norm", "mean"],
        ["norm", "variance"],
        ["pretrained", "kernel"],
        ["pretrained", "bias"],
    ]
    assert {p.split("/")[-2] for p in start["drawn"]} == {"norm", "hidden", "out"}
    (x, _), _ = adapted_models.data()
    for archive in [tmp_path / "initial.weights.h5", *(tmp_path / b / "model.keras" for b in BACKEND_NAMES)]:
        if archive.suffix == ".keras":
            with zipfile.ZipFile(archive) as z:
                (tmp_path / "unpacked.weights.h5").write_bytes(z.read("model.weights.h5"))
            archive = tmp_path / "unpacked.weights.h5"
        mean, variance, _count = _normalization_state(archive)
        np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5)
        np.testing.assert_allclose(variance, x.var(0), rtol=1e-4)
