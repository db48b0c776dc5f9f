"""Pipelines as inputs: tf.data, a torch DataLoader, a PyDataset and a generator function train the
seed MLP on every backend, compare proves every backend was fed the same batches, and an unseeded
shuffle is caught before any verdict on the model."""

from __future__ import annotations

import json

import pytest
from helpers import FIXTURES

PIPELINES = {
    "tfdata": "tf.data",
    "dataloader": "DataLoader",
    "pydataset": "PyDataset",
    "generator": "generator",
    "arrays": "arrays",
}


def data(name: str) -> str:
    return f"{FIXTURES / 'pipelines.py'}:{name}"


@pytest.mark.cross
@pytest.mark.parametrize("name", list(PIPELINES))
def test_compare_agrees_on_each_pipeline_with_identical_batches(pool, tmp_path, name):
    from backendlab.compare import compare

    options = {"batch_size": 16} if name == "arrays" else {}
    report = compare(model="mlp", data=data(name), epochs=2, portability=False, out=str(tmp_path), pool=pool, **options)
    assert report.verdict == "agree", report.batches
    assert {b: r.verdict for b, r in report.backends.items()} == dict.fromkeys(report.backends, "agree")
    written = json.loads((tmp_path / "report.json").read_text())["batches"]
    assert written["identical"] is True and written["first_differing_step"] is None
    assert written["kind"] == PIPELINES[name] and written["steps"] == 8  # 2 epochs of 4 batches of 16
    assert written["backends"] == ["jax", "tensorflow", "torch"]
    assert "Batches: identical: every backend was fed the same" in (tmp_path / "report.md").read_text()


@pytest.mark.cross
def test_an_unseeded_shuffle_is_caught_before_any_verdict(pool, tmp_path):
    from backendlab.compare import compare

    report = compare(
        model="mlp", data=data("tfdata_unseeded"), epochs=1, portability=False, out=str(tmp_path), pool=pool
    )
    assert report.verdict == "nondeterministic" and report.exit_code == 1
    batches = json.loads((tmp_path / "report.json").read_text())["batches"]
    assert batches["identical"] is False and batches["first_differing_step"] == 1
    assert batches["kind"] == "tf.data"
    assert batches["message"].startswith("the tf.data input is not deterministic: at step 1, jax:")
    assert (tmp_path / "report.md").read_text().startswith("# backendlab compare: NONDETERMINISTIC")


def test_a_generator_object_is_refused_with_what_to_return_instead(backend):
    from backendlab.errors import UsageError
    from backendlab.training import prepare

    with pytest.raises(UsageError, match=r"train is a generator, which can be read only once: return the function"):
        prepare("mlp", data("generator_object"))


def test_batch_size_with_a_pipeline_is_a_one_line_error(backend):
    from backendlab.errors import UsageError
    from backendlab.training import prepare

    with pytest.raises(UsageError) as caught:
        prepare("mlp", data("generator"), batch_size=8)
    assert str(caught.value) == (
        f"--batch-size 8 does not apply: data {data('generator')!r} is a generator pipeline, "
        "which fixes its own batches; batch it in the pipeline instead"
    )


def test_a_generator_pipeline_trains_here_with_its_own_batches(backend):
    from backendlab.training import run_training

    result = run_training("mlp", data("generator"), epochs=2, loop="custom")
    assert result.input_kind == "generator" and result.repeat_differs_at is None
    assert len(result.batch_checksums) == 8 and result.batch_checksums[:4] == result.batch_checksums[4:]
    assert 0.0 <= result.input_wait_s <= result.train_time_s


@pytest.mark.cross
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


def test_processes_with_a_pipeline_is_a_one_line_error(backend):
    from backendlab.data import load_dataset
    from backendlab.errors import UsageError
    from backendlab.runspec import RunSpec
    from backendlab.training import check_pipeline_options

    spec = RunSpec(model="mlp", data=data("generator"), processes=2)
    with pytest.raises(UsageError) as caught:
        check_pipeline_options(spec, load_dataset(spec.data, spec.seed), given_batch_size=False)
    assert str(caught.value) == (
        f"--processes 2 takes arrays: data {data('generator')!r} is a generator pipeline, which fixes its own "
        "batches, and backendlab shares out only its own batches"
    )
