"""``backendlab tune``: every setting timed and judged against the backend's default settings.

One tiny tune per backend session, shared by the module: two user models on raw sensor
readings (tests/fixtures/tune_models.py). Under ``mixed_bfloat16`` one loses its inputs'
signal (the parity verdict must catch it) and the other raises (a crashed setting). No test
asserts a speed: speeds are measured by ``backendlab tune`` itself, never asserted.
"""

from __future__ import annotations

import argparse

import pytest

from backendlab.errors import UsageError
from backendlab.tune.cli import add_tune_arguments, options_from_args
from backendlab.tune.grid import Setting
from backendlab.tune.report import snippet


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


def test_the_docs_snippet_is_the_one_tune_writes():
    from helpers import ROOT

    readme = (ROOT / "docs" / "bench-tune.md").read_text()
    setting = Setting(False, steps_per_execution=32, intra_threads=1, inter_threads=1)
    assert f"```python\n{snippet('tensorflow', setting)}\n```" in readme


def parse(*argv):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_tune_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ("--models", "vgg"),
            "unknown model 'vgg': use mlp, cnn, cnn_dropout, rnn, transformer or path/to/file.py:build",
        ),
        (("--loops", "scan"), "unknown loop 'scan': valid loops are fit, trainstep, fit-wholestep"),
        (
            ("--dtype-policies", "float64"),
            "unknown dtype policy 'float64': valid are float32, mixed_bfloat16, mixed_float16",
        ),
        (("--backends", "mxnet"), "unknown backend 'mxnet': valid backends are jax, tensorflow, torch"),
        (("--models", "nothere.py:build"), "model file 'nothere.py' does not exist"),
        (("--models", "mlp", "--data", "gone/data.py:load"), "data file 'gone/data.py' does not exist"),
        (("--models", "mlp", "--data", "gone.npz"), "data file 'gone.npz' does not exist"),
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
    compiled = Best("torch", "cnn", 32, {"jit_compile": True}, 1600.0, 1.0, 0.5, "same")
    assert shortfall(compiled, [profile]).endswith(
        "host sync 0.02; the best setting compiles its whole step, which these phases, timed alone, do not time."
    )


def test_the_whole_step_fit_is_tried_compiled_where_keras_fit_breaks_its_graph_and_nowhere_else():
    from backendlab.tune.grid import WHOLE_STEP, Grid, applicable, single_axis_settings

    whole = [s for s in single_axis_settings(Grid()) if s.loop == WHOLE_STEP]
    assert [s.label for s in whole] == ["jit=on fit-wholestep"]
    assert applicable(whole[0], "torch") is None
    assert applicable(whole[0], "jax") == "Keras's fit on JAX already compiles its whole step (jax.jit)"
    assert applicable(whole[0].replace(jit_compile=False), "torch") == (
        "the whole-step train function is compiled: jit=on only"
    )
    code = snippet("torch", whole[0])
    assert code.splitlines() == [
        "from backendlab import whole_step_fit",
        "",
        "model.compile(optimizer=optimizer, loss=loss, jit_compile=True)",
        "with whole_step_fit(model):  # the whole step in one compiled graph, for this model",
        "    model.fit(x, y, batch_size=batch_size)",
    ]
    compile(code, "snippet", "exec")


def _trained(c: float) -> dict:
    """Parity arrays of a run ``c`` times a rounding-like difference away from the default's: the loss's
    running mean apart by 3e-7 at step 1, growing 1.35-fold a step (3.3e-3 at step 32), as training grows
    a rounding difference; the predictions and the weights apart in proportion."""
    import numpy as np

    steps = np.arange(1, 33)
    growth = 3e-7 * 1.35 ** (steps - 1)
    running = 1.0 / (1.0 + 0.05 * steps) + c * growth
    return {
        "loss": running[-1:],
        "running_loss": running,
        "predictions": np.array([[2.0, -1.0], [0.5, 0.0]]) + c * 1e-3,
        "w:dense/kernel": np.full((3, 2), 0.5) + c * 2e-3,
    }


def test_a_compiled_setting_apart_from_the_default_like_rounding_is_kept_within_rounding():
    from backendlab.tune.grid import WHOLE_STEP
    from backendlab.tune.report import parity_cell
    from backendlab.tune.results import TuneRow
    from backendlab.tune.worker import judge, judge_rounding

    default, twins = _trained(0.0), [_trained(1.0), _trained(-0.8)]  # the default, weights moved 1 ulp each step
    compiled = Setting(jit_compile=True, loop=WHOLE_STEP)
    mine = _trained(2.0)
    fixed = judge(mine, default, compiled, 32)
    assert fixed.verdict == "differs"
    parity = judge_rounding(fixed, mine, default, twins)
    assert (parity.verdict, parity.kept, round(parity.floor_ratio, 6)) == ("within rounding", True, 2.0)
    assert parity.message == (
        "outside rtol=0.001, atol=0.001 after 32 steps, but within rounding: at every step and in every quantity "
        "no further from the default than 10x the noise floor (what moving every weight by 1 ulp at each step does "
        "to the default): losses at most 2x, at step 32, loss 2x, weights 2x"
    )
    row = TuneRow("torch", "mlp", 256, compiled.to_dict(), compiled.label, parity=parity)
    assert parity_cell(row) == "within rounding (2x floor)"
    # A setting that logs every 8th step (steps_per_execution 8) is held to the default's steps 8, 16, 24, 32.
    every_8th = {**mine, "running_loss": mine["running_loss"][7::8]}
    assert judge_rounding(fixed, every_8th, default, twins).verdict == "within rounding"


def test_a_setting_thirty_times_the_noise_floor_away_differs_and_says_how_far():
    from backendlab.tune.report import parity_cell
    from backendlab.tune.results import TuneRow
    from backendlab.tune.worker import judge, judge_rounding

    default, twins = _trained(0.0), [_trained(1.0), _trained(-0.8)]
    mine = _trained(30.0)
    fixed = judge(mine, default, Setting(jit_compile=True), 32)
    parity = judge_rounding(fixed, mine, default, twins)
    assert (parity.verdict, parity.kept, round(parity.floor_ratio, 6)) == ("differs", False, 30.0)
    assert parity.message == (
        f"{fixed.message}; beyond 10x the noise floor (what moving every weight by 1 ulp at each step does to the "
        "default): step 32 at 30x its floor, loss at 30x, predictions at 30x, weights at 30x"
    )
    assert fixed.message.startswith("outside rtol=0.001, atol=0.001 after 32 steps in loss")
    row = TuneRow("torch", "mlp", 256, {}, "jit=on", parity=parity)
    assert parity_cell(row) == "differs (2.6e-01, 30x floor)"


def test_trainstep_is_tried_compiled_on_its_own_unless_jit_on_is_left_out():
    """On the CNN, PyTorch's fit was slower compiled, so jit=on never joined TrainStep in the combination;
    TrainStep compiled (its whole step in one graph) was the fastest setting once tried."""
    from backendlab.tune.grid import Grid, single_axis_settings

    labels = [s.label for s in single_axis_settings(Grid())]
    assert "jit=on trainstep" in labels and "jit=auto trainstep" in labels
    assert "jit=on trainstep" not in [s.label for s in single_axis_settings(Grid(jit_compile=(False,)))]
