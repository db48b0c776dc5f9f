"""``backendlab tune``: every setting timed and judged against the backend's default settings.

One tiny tune per backend session, shared by the module: two user models on raw sensor
readings (tests/fixtures/tune_models.py). Under ``mixed_bfloat16`` one loses its inputs'
signal (the parity verdict must catch it) and the other raises (a crashed setting). No test
asserts a speed: speeds are measured by ``backendlab tune`` itself, never asserted.
"""

from __future__ import annotations

import argparse

import pytest
from helpers import FIXTURES

from backendlab.backends import BACKENDS
from backendlab.errors import UsageError
from backendlab.results import read_json
from backendlab.runspec import RunSpec
from backendlab.tune.cli import add_tune_arguments, options_from_args
from backendlab.tune.grid import Grid, Setting
from backendlab.tune.report import snippet

MODELS = FIXTURES / "tune_models.py"
READINGS, STRICT = f"{MODELS}:build", f"{MODELS}:build_strict"
BEST_KEYS = {
    "backend",
    "model",
    "batch_size",
    "settings",
    "samples_per_sec",
    "speedup_vs_default",
    "native_ratio",
    "parity",
}


@pytest.fixture(scope="module")
def tuned(backend, tmp_path_factory):
    from backendlab.tune.run import TuneOptions, run_tune

    out = tmp_path_factory.mktemp("tune")
    # torch.compile takes tens of seconds per model here: the PyTorch session tries eager only.
    jit = (False,) if backend == "torch" else (True, False)
    opts = TuneOptions(
        models=(READINGS, STRICT),
        backends=(backend,),
        batch_sizes=(32,),
        grid=Grid(
            jit_compile=jit,
            steps_per_execution=(1, 2),
            loops=("fit", "trainstep"),
            threads=((None, None),),
            dtype_policies=("float32", "mixed_bfloat16"),
        ),
        repeats=1,
        warmup=0,
        samples_per_repeat=128,
        parity_steps=4,
        native=False,
        profile=False,
        run=RunSpec(data=f"{MODELS}:readings"),
    )
    report = run_tune(opts, out)
    return report, out


def rows_of(report, model):
    return {row.label: row for row in report.rows if row.model == model}


def default_of(report, model) -> Setting:
    """The default settings as the worker resolved them (jit_compile="auto" depends on backend and device)."""
    return Setting.from_dict(next(r for r in report.rows if r.model == model and r.is_default).settings)


def test_every_float32_setting_trains_the_same_as_the_default(tuned, backend):
    report, _ = tuned
    rows = rows_of(report, READINGS)
    default = default_of(report, READINGS).label
    assert rows[default].is_default and rows[default].parity.verdict == "reference"
    float32 = [r for r in rows.values() if r.settings["dtype_policy"] == "float32" and r.ok and not r.is_default]
    assert {r.label.split(" ", 1)[-1] for r in float32} >= {"trainstep"}
    for row in float32:
        assert row.parity.verdict == "same", (row.label, row.parity.message)
        assert row.parity.loss_max_rel <= 1e-3 and row.parity.weights_max_rel <= 1e-3
        assert row.samples_per_sec > 0 and row.speedup_vs_default > 0 and row.first_step_s > 0


def test_parity_catches_bfloat16_rounding_away_the_inputs_signal(tuned, backend):
    report, _ = tuned
    row = rows_of(report, READINGS)[default_of(report, READINGS).replace(dtype_policy="mixed_bfloat16").label]
    assert row.ok and row.parity.verdict == "differs"
    assert row.parity.rtol == 1.6e-2
    assert row.parity.predictions_max_rel > 1.6e-2
    assert "outside rtol=0.016, atol=0.001 after 4 steps in " in row.parity.message
    assert all(b.settings["dtype_policy"] == "float32" for b in report.best)


def test_a_setting_that_crashes_is_a_failed_row_and_the_others_go_on(tuned, backend):
    report, _ = tuned
    rows = rows_of(report, STRICT)
    default = default_of(report, STRICT)
    row = rows[default.replace(dtype_policy="mixed_bfloat16").label]
    assert row.status == "failed"
    assert row.note == (
        f"UsageError: model '{STRICT}' raised TypeError: Float32Only.call(): "
        "Float32Only expects float32 inputs, got bfloat16"
    )
    assert rows[default.label].ok and rows[default.replace(loop="trainstep").label].ok


def test_steps_per_execution_is_tried_only_where_keras_allows_it(tuned, backend):
    report, _ = tuned
    spe = [r for r in report.rows if r.settings["steps_per_execution"] == 2]
    assert spe
    for row in spe:
        if BACKENDS[backend].steps_per_execution and row.settings["loop"] == "fit":
            assert row.ok and row.parity.verdict == "same"
        else:
            assert row.status == "not_applicable"


def test_tune_json_has_one_best_row_per_model_with_the_issue_keys(tuned, backend):
    report, out = tuned
    saved = read_json(out / "tune.json")
    assert [(b["backend"], b["model"], b["batch_size"]) for b in saved["best"]] == [
        (backend, READINGS, 32),
        (backend, STRICT, 32),
    ]
    for best in saved["best"]:
        assert BEST_KEYS <= set(best)
        assert best["parity"] in ("same", "reference")
        tried = [r for r in saved["rows"] if r["model"] == best["model"] and r["status"] == "ok"]
        kept = [r for r in tried if r["parity"]["verdict"] in ("same", "reference")]
        assert best["samples_per_sec"] == max(r["samples_per_sec"] for r in kept)
        assert best["native_ratio"] is None  # these models have no native loop


def test_tune_md_shows_each_winner_with_a_snippet_and_the_plot_is_a_png(tuned):
    report, out = tuned
    text = (out / "tune.md").read_text()
    for best in report.best:
        assert f"### {best.backend}, {best.model}, batch 32: {best.label}" in text
        assert best.snippet in text
    assert "Ranking:" in text
    assert "- parity lost: outside rtol=0.016, atol=0.001 after 4 steps in " in text
    assert f"- failed: UsageError: model '{STRICT}' raised TypeError: Float32Only.call(): " in text
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_snippet_is_code_that_compiles_the_winning_setting():
    setting = Setting(True, steps_per_execution=32, intra_threads=1, inter_threads=1, dtype_policy="mixed_bfloat16")
    code = snippet("tensorflow", setting)
    assert code.splitlines() == [
        "tf.config.threading.set_intra_op_parallelism_threads(1)",
        "tf.config.threading.set_inter_op_parallelism_threads(1)  # before TensorFlow's first op",
        'keras.config.set_dtype_policy("mixed_bfloat16")  # before building the model',
        "model.compile(optimizer=optimizer, loss=loss, jit_compile=True, steps_per_execution=32)",
    ]
    compile(code, "snippet", "exec")
    step = snippet("torch", Setting(True, loop="trainstep"))
    assert "step = TrainStep(model, loss, optimizer, jit_compile=True)" in step
    compile(step, "snippet", "exec")


def test_the_readmes_snippet_is_the_one_tune_writes():
    from helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    setting = Setting(False, steps_per_execution=32, intra_threads=1, inter_threads=1)
    assert f"```python\n{snippet('tensorflow', setting)}\n```" in readme


def parse(*argv):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_tune_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--models", "vgg"), "unknown model 'vgg': use mlp, cnn, rnn, transformer or path/to/file.py:build"),
        (("--loops", "scan"), "unknown loop 'scan': valid loops are fit, trainstep"),
        (
            ("--dtype-policies", "float64"),
            "unknown dtype policy 'float64': valid are float32, mixed_bfloat16, mixed_float16",
        ),
        (("--backends", "mxnet"), "unknown backend 'mxnet': valid backends are jax, tensorflow, torch"),
        (("--models", "nothere.py:build"), "model file 'nothere.py' does not exist"),
        (("--models", "mlp", "--data", "gone/data.py:load"), "data file 'gone/data.py' does not exist"),
    ],
)
def test_bad_tune_options_are_one_line_errors(argv, message):
    with pytest.raises(UsageError) as err:
        options_from_args(parse(*argv))
    assert str(err.value) == message


def test_bad_thread_counts_are_refused_by_the_parser():
    with pytest.raises(argparse.ArgumentError, match="threads are default or INTRA/INTER counts like 1/1, got '0/1'"):
        parse("--threads", "default,0/1")
    assert parse("--threads", "default,2/1,1").threads == ((None, None), (2, 1), (1, 1))


def test_the_tune_command_refuses_a_missing_model_file_in_one_line_and_imports_no_framework(tmp_path):
    from helpers import run_cli, run_python

    done = run_cli("tune", "--models", "nothere.py:build", "--out", str(tmp_path / "out"), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "backendlab: error: model file 'nothere.py' does not exist"
    assert not (tmp_path / "out").exists()
    code = (
        "import sys; import backendlab.tune.run, backendlab.tune.cli, backendlab.tune.report; "
        "print([m for m in ('keras', 'jax', 'tensorflow', 'torch') if m in sys.modules])"
    )
    assert run_python(code, timeout=60).stdout.strip() == "[]"


def test_a_best_setting_below_the_native_loop_is_explained_from_its_profile():
    from backendlab.tune.report import shortfall
    from backendlab.tune.results import Best, Profile

    best = Best("torch", "cnn", 32, {}, samples_per_sec=1600.0, speedup_vs_default=1.0, native_ratio=0.5, parity="same")
    profile = Profile("torch", "cnn", 32, 7.0, 10.0, 0.8, 0.1, 0.02, native_forward_ms=2.0, native_step_ms=8.0)
    assert shortfall(best, [profile]) == (
        "torch cnn batch 32: the best setting's step takes 20.00 ms against the native loop's 10.00 ms; "
        "timed alone, its phases take (ms) loss and backward 10.00, forward 7.00, optimizer 0.80, metrics 0.10, "
        "host sync 0.02; the Keras forward pass takes +5.00 ms against the native forward pass on the same layers "
        "(2.00 ms), the cost of calling through Keras's layers."
    )
    assert shortfall(best, []) is None  # no profile: nothing to explain it with
