"""compare's catalog of known differences (backendlab/compare/known_differences.json) on real backends.

One compare per entry, of a tiny model (tests/fixtures/known_models.py) that shows the entry's difference in
its first step (one in its second): the reference (JAX) and the backend it differs on, one epoch of two steps,
located with --locate (the data-parallel entry, on two devices, by its model alone). The located divergence
must be explained by the entry, in report.json and report.md.
"""

from __future__ import annotations

import json

import pytest
from helpers import FIXTURES

from backendlab.compare import compare
from backendlab.compare.known import by_id, catalog

MODELS = FIXTURES / "known_models.py"

#: entry -> (the model that triggers it, its data, the backend other than JAX that it is located on)
CASES = {
    "batchnorm-per-device-statistics": ("batchnorm", "features", "tensorflow"),
    "tensorflow-sparse-embedding-gradient": ("embedding_clipnorm", "ids", "tensorflow"),
    "torch-moments-variance": ("moments_large_mean", "features", "torch"),
    "torch-average-pooling-same-padding": ("average_pool_same", "features", "torch"),
    "jax-abs-slope-at-zero": ("l1_at_zero", "features", "torch"),
    "tensorflow-sigmoid-binary-crossentropy": ("saturated_sigmoid", "features", "tensorflow"),
    "tensorflow-softmax-categorical-crossentropy": ("saturated_softmax", "features", "tensorflow"),
    "jax-leaky-relu-slope-at-zero": ("leaky_relu_at_zero", "features", "tensorflow"),
    "tensorflow-maximum-tie-gradient": ("maximum_tie", "features", "tensorflow"),
    "jax-clip-slope-at-bound": ("clip_at_bound", "features", "tensorflow"),
    "torch-top-k-ties": ("top_k_tied", "features", "torch"),
    "torch-cast-out-of-range-wraps": ("cast_out_of_range", "features", "torch"),
}


#: entry -> how its case trains, where not on one device (a data-parallel entry: no step is taken apart)
OPTIONS = {"batchnorm-per-device-statistics": dict(devices=2, drop_remainder=True)}


def test_every_entry_of_the_catalog_has_a_case():
    assert set(CASES) == {k.id for k in catalog()}


@pytest.mark.parametrize("entry", CASES)
def test_a_model_that_triggers_an_entry_is_explained_by_it(entry, pool, tmp_path):
    model, data, backend = CASES[entry]
    report = compare(
        model=f"{MODELS}:{model}",
        data=f"{MODELS}:{data}",
        epochs=1,
        backends=["jax", backend],
        locate=True,
        floor=False,
        portability=False,
        pool=pool,
        out=str(tmp_path),
        **OPTIONS.get(entry, {}),
    )
    d = report.backends[backend].divergence
    assert d["known"] == entry, d
    assert json.loads((tmp_path / "report.json").read_text())["backends"][backend]["divergence"]["known"] == entry
    assert by_id(entry).describe() in (tmp_path / "report.md").read_text()
