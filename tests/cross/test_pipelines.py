"""Pipelines as inputs: tf.data, a torch DataLoader, a PyDataset and a generator function train the
seed MLP on every backend, compare proves every backend was fed the same batches, and an unseeded
shuffle is caught before any verdict on the model."""

from __future__ import annotations

import json

import pytest
from helpers import pipeline

PIPELINES = {
    "tfdata": "tf.data",
    "dataloader": "DataLoader",
    "pydataset": "PyDataset",
    "generator": "generator",
    "arrays": "arrays",
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_compare_agrees_on_each_pipeline_with_identical_batches(pool, tmp_path, name):
    from backendlab.compare import compare

    options = {"batch_size": 16} if name == "arrays" else {}
    report = compare(
        model="mlp", data=pipeline(name), epochs=2, portability=False, out=str(tmp_path), pool=pool, **options
    )
    assert report.verdict == "agree", report.batches
    assert {b: r.verdict for b, r in report.backends.items()} == dict.fromkeys(report.backends, "agree")
    written = json.loads((tmp_path / "report.json").read_text())["batches"]
    assert written["identical"] is True and written["first_differing_step"] is None
    assert written["kind"] == PIPELINES[name] and written["steps"] == 8  # 2 epochs of 4 batches of 16
    assert written["backends"] == ["jax", "tensorflow", "torch"]
    md = (tmp_path / "report.md").read_text()
    assert "Batches: identical: every backend was fed the same" in md
    # What ran: the pipeline's batches of 16, not the --batch-size default of 32
    assert report.settings["batch_size"] == 16 and "What ran: optimizer SGD (learning_rate=0.01, momentum=0.9, " in md
    assert "; batch 16, 4 steps an epoch; " in md


def test_an_unseeded_shuffle_is_caught_before_any_verdict(pool, tmp_path):
    from backendlab.compare import compare

    report = compare(
        model="mlp", data=pipeline("tfdata_unseeded"), epochs=1, portability=False, out=str(tmp_path), pool=pool
    )
    assert report.verdict == "nondeterministic" and report.exit_code == 1
    batches = json.loads((tmp_path / "report.json").read_text())["batches"]
    assert batches["identical"] is False and batches["first_differing_step"] == 1
    assert batches["kind"] == "tf.data"
    assert batches["message"].startswith("the tf.data input is not deterministic: at step 1, jax:")
    assert (tmp_path / "report.md").read_text().startswith("# backendlab compare: NONDETERMINISTIC")


def test_bench_has_an_input_stall_for_each_pipeline_kind(tmp_path):
    from rich.console import Console

    from backendlab.bench.cli import run_with_bars as run_preset
    from backendlab.bench.presets import PRESETS

    preset = PRESETS["tiny"].with_options(
        models=("mlp",), modes=("fit",), pipelines=tuple(PIPELINES.values()), native=False, samples_per_repeat=128
    )
    report = run_preset(preset, tmp_path, console=Console(file=open(tmp_path / "progress.txt", "w")))
    rows = {(r.backend, r.pipeline): r for r in report.rows}
    assert len(rows) == 15 and all(r.ok for r in rows.values())
    for (backend, kind), row in rows.items():
        if kind == "arrays":
            assert row.input_stall is None  # Keras slices the arrays itself: nothing to time
        else:
            assert 0.0 < row.input_stall < 1.0, (backend, kind, row.input_stall)
    assert "input=tf.data" in (tmp_path / "bench.md").read_text()
