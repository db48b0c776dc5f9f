"""The benchmark harness (``backendlab bench``): its files, its rows, and what it does when a worker fails.

No test here asserts a timing: speed is measured, never asserted. One tiny run on every
backend is shared by the module; it includes two user models, one that raises on
TensorFlow (a failed cell) and one that kills its worker on PyTorch (a crashed worker).
"""

from __future__ import annotations

import textwrap

import pytest

from backendlab.backends import BACKEND_NAMES
from backendlab.bench.presets import PRESETS
from backendlab.bench.results import BenchReport
from backendlab.results import read_json

# Only the tests that start workers on every backend need the `all` session.

REQUIRED = (
    "backend",
    "impl",
    "model",
    "mode",
    "batch_size",
    "samples_per_sec",
    "samples_per_sec_min",
    "samples_per_sec_max",
    "ms_per_step",
    "first_step_s",
    "peak_rss_mb",
    "gflops_per_sec",
    "fraction_of_peak",
    "native_ratio",
    "jit_compile",
    "steps_per_execution",
    "threads",
)

RAISES_ON_TENSORFLOW = """
import keras

def build():
    if keras.backend.backend() == "tensorflow":
        raise RuntimeError("this model does not build on tensorflow")
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="softmax")])
"""

KILLS_TORCH_WORKER = """
import os, signal
import keras

def build():
    if keras.backend.backend() == "torch":
        os.kill(os.getpid(), signal.SIGKILL)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="softmax")])
"""


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """(report, output folder) of one tiny run: mlp and cnn fit, batch 32, 2 repeats, spe 1 and 2."""
    from rich.console import Console

    from backendlab.bench.cli import run_with_bars as run_preset

    folder = tmp_path_factory.mktemp("bench")
    raises, kills = folder / "raises.py", folder / "kills.py"
    raises.write_text(textwrap.dedent(RAISES_ON_TENSORFLOW))
    kills.write_text(textwrap.dedent(KILLS_TORCH_WORKER))
    preset = PRESETS["tiny"].with_options(
        models=("mlp", "cnn", f"{raises}:build", f"{kills}:build"), modes=("fit",), steps_per_execution=(1, 2)
    )
    out = folder / "out"
    report = run_preset(preset, out, console=Console(file=open(folder / "progress.txt", "w")))
    return report, out


def _rows(report, **match):
    return [r for r in report.rows if all(getattr(r, k) == v for k, v in match.items())]


def test_bench_json_has_machine_versions_and_every_row_field(bench):
    report, out = bench
    data = read_json(out / "bench.json")
    machine = data["machine"]
    assert machine["cpu"] and machine["cores"] >= 1
    assert machine["matmul_peak_gflops"] > 0
    assert set(machine["matmul_peak_by_backend"]) == {"jax", "tensorflow"}  # torch's worker died
    assert machine["python"] and machine["keras"].startswith("3.")
    assert set(machine["frameworks"]) == set(BACKEND_NAMES) and all(machine["frameworks"].values())
    assert "2 FLOPs per multiply-add" in data["flop_convention"]
    for row in data["rows"]:
        assert set(REQUIRED) <= set(row)
    assert BenchReport.from_dict(data).rows == report.rows


def test_every_measured_row_has_positive_throughput_and_flops(bench):
    report, _ = bench
    measured = [r for r in report.rows if r.ok]
    assert len(measured) >= 3 * 2 * 2  # mlp and cnn, Keras and native, on each backend
    for row in measured:
        assert row.samples_per_sec > 0 and row.samples_per_sec_min <= row.samples_per_sec <= row.samples_per_sec_max
        assert row.ms_per_step > 0 and row.first_step_s > 0 and row.peak_rss_mb > 0
        assert row.repeats == 2
        if row.model in ("mlp", "cnn"):
            assert row.gflops_per_sec > 0 and 0 < row.fraction_of_peak
            assert row.params > 0


def _twins(report):
    """(keras row, native row) of mlp and cnn on every backend, at steps_per_execution 1."""
    for backend in BACKEND_NAMES:
        for model in ("mlp", "cnn"):
            yield (
                _rows(report, backend=backend, model=model, impl="keras", steps_per_execution=1)[0],
                _rows(report, backend=backend, model=model, impl="native")[0],
            )


def test_keras_rows_carry_their_ratio_to_the_native_loop_for_mlp_and_cnn(bench):
    report, _ = bench
    for keras_row, native_row in _twins(report):
        assert keras_row.native_ratio == pytest.approx(keras_row.samples_per_sec / native_row.samples_per_sec)
        assert native_row.native_ratio is None


def test_native_and_keras_twins_count_the_same_parameters_and_flops(bench):
    report, _ = bench
    for keras_row, native_row in _twins(report):
        assert keras_row.params == native_row.params
        assert keras_row.flops_per_sample == native_row.flops_per_sample
    mlp = _rows(report, backend="jax", model="mlp", impl="keras", steps_per_execution=1)[0]
    assert mlp.flops_per_sample == 2 * (784 * 256 + 256 * 256 + 256 * 10)


def test_steps_per_execution_on_torch_is_recorded_as_not_applicable(bench):
    report, _ = bench
    rows = _rows(report, backend="torch", impl="keras", steps_per_execution=2)
    assert rows and all(r.status == "not_applicable" for r in rows)
    assert "steps_per_execution" in rows[0].note
    assert all(r.ok for r in _rows(report, backend="jax", impl="keras", steps_per_execution=2, model="mlp"))


def test_a_failing_cell_is_a_failed_row_and_the_worker_goes_on(bench):
    report, _ = bench
    failed = [r for r in report.rows if r.status == "failed"]
    assert [(r.backend, r.model.endswith("raises.py:build")) for r in failed] == [("tensorflow", True)] * len(failed)
    assert "does not build on tensorflow" in failed[0].note
    # the model after it still ran on tensorflow
    assert _rows(report, backend="tensorflow", impl="keras", steps_per_execution=1)[-1].model.endswith("kills.py:build")


def test_a_crashed_worker_is_reported_and_every_other_row_is_kept(bench):
    report, out = bench
    assert [(f.backend, f.status) for f in report.failures] == [("torch", "crashed")]
    assert "SIGKILL" in report.failures[0].message
    # what torch measured before it died is kept, and the other backends ran every model
    measured = {r.model.rsplit("/", 1)[-1] for r in _rows(report, backend="torch") if r.ok}
    assert measured == {"mlp", "cnn", "raises.py:build"}
    for backend in ("jax", "tensorflow"):
        assert any(r.model.endswith("kills.py:build") and r.ok for r in _rows(report, backend=backend))
    assert "torch: worker crashed" in (out / "bench.md").read_text()


def test_markdown_and_plot_are_written(bench):
    _, out = bench
    text = (out / "bench.md").read_text()
    assert "| backend | impl | model | mode | batch |" in text and "not applicable" in text
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
