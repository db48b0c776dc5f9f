"""The benchmark harness (``backendlab bench``): its files, its rows, and what it does when a worker fails.

No test here asserts a timing: speed is measured, never asserted. One tiny run on every
backend is shared by the module; it includes two user models, one that raises on
TensorFlow (a failed cell) and one that kills its worker on PyTorch (a crashed worker).
"""

from __future__ import annotations

import pytest
from helpers import run_cli, run_python


def test_the_bench_command_imports_no_framework():
    code = (
        "import sys; from backendlab.cli import build_parser; import backendlab.bench.run, backendlab.bench.cli; "
        "build_parser(); print([m for m in ('keras', 'jax', 'tensorflow', 'torch') if m in sys.modules])"
    )
    done = run_python(code, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "vgg"], "unknown model 'vgg'"),
        (["--backends", "mxnet"], "unknown backend 'mxnet'"),
        (["--modes", "train"], "unknown mode 'train'"),
        (["--repeats", "2,3"], "--repeats takes one number"),
    ],
)
def test_bad_bench_options_are_one_line_errors(argv, message):
    done = run_cli("bench", *argv, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and message in done.stderr


def test_the_random_preset_measures_each_cell_with_backend_and_portable_randomness():
    from backendlab.bench.presets import PRESETS
    from backendlab.bench.results import BenchRow
    from backendlab.bench.run import plan_cells

    cells = plan_cells(PRESETS["random"])
    assert {(c["model"], c["batch_size"]) for c in cells} == {
        (m, b) for m in ("cnn_dropout", "bert") for b in (32, 256)
    }
    assert [c["random"] for c in cells] == ["backend", "portable"] * 4  # side by side, same settings
    # The other presets keep Keras's own generators, as measured before --random, and say nothing of it.
    assert {c["random"] for c in plan_cells(PRESETS["full"]) if c["impl"] == "keras"} == {"backend"}
    row = BenchRow("jax", "keras", "bert", "fit", 32, "True", 1, None, random="portable")
    assert row.settings == "jit=True spe=1 thr=default random=portable"
    assert BenchRow("jax", "keras", "bert", "fit", 32, "True", 1, None).settings == "jit=True spe=1 thr=default"
