"""Sample weights across backends: compare agrees on a data function's (x, y, w) arrays and on a pipeline of
(x, y, w) batches, and its proof of the batches says every backend was fed the same weights."""

from __future__ import annotations

import json

import pytest
from helpers import FIXTURES


@pytest.mark.parametrize("name, kind", [("arrays", "arrays"), ("generator", "generator")])
def test_compare_agrees_with_sample_weights_fed_alike(pool, tmp_path, name, kind):
    from backendlab.compare import compare

    options = {"batch_size": 16} if kind == "arrays" else {}
    data = f"{FIXTURES / 'weighted_data.py'}:{name}"
    report = compare(model="mlp", data=data, epochs=1, portability=False, out=str(tmp_path), pool=pool, **options)
    assert report.verdict == "agree", report.batches
    assert {b: r.verdict for b, r in report.backends.items()} == dict.fromkeys(report.backends, "agree")
    batches = json.loads((tmp_path / "report.json").read_text())["batches"]
    assert batches["identical"] is True and batches["sample_weights"] is True
    assert batches["kind"] == kind and batches["steps"] == 4 and batches["backends"] == ["jax", "tensorflow", "torch"]
    assert (
        f"Batches: identical: every backend was fed the same {kind} batches and sample weights at all 4 steps."
        in (tmp_path / "report.md").read_text()
    )
