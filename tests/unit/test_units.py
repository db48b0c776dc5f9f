"""Unit tests of the parts that need no framework: the differences compare reports, the FLOP
arithmetic, a failed worker's one-line message, JSON results and the bench report.

They run once, in seconds, in the nox session with no framework installed (tests/unit/conftest.py
checks that none of keras, jax, tensorflow and torch was imported).
"""

from __future__ import annotations

import dataclasses
import io
import json
import traceback
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from backendlab import results
from backendlab.bench import report as bench_report
from backendlab.bench.flops import forward_flops, step_flops
from backendlab.bench.results import BenchReport, BenchRow, Machine, WorkerFailure
from backendlab.compare.diff import Diff, combine, diff_arrays, first_step_outside
from backendlab.results import read_json, to_jsonable, write_json
from backendlab.workers.protocol import last_error_line

INF = float("inf")
NAN = float("nan")
RTOL, ATOL = 1e-3, 1e-3  # compare's defaults

# --- compare's differences ------------------------------------------------------------


def test_identical_values_agree_with_zero_difference():
    assert Diff.of([0.5, 0.25, -2.0], [0.5, 0.25, -2.0], RTOL, ATOL) == Diff(0.0, 0.0, True, 3)


def test_difference_within_atol_plus_rtol_times_reference_agrees():
    # the bound for a reference of 10 is 1e-3 + 1e-3 * 10 = 0.011
    inside = Diff.of([10.0105], [10.0], RTOL, ATOL)
    assert inside.within and inside.max_abs == pytest.approx(0.0105) and inside.max_rel == pytest.approx(0.00105)
    outside = Diff.of([10.0115], [10.0], RTOL, ATOL)
    assert not outside.within and outside.max_abs == pytest.approx(0.0115)


def test_relative_difference_is_floored_at_atol_so_values_near_zero_do_not_blow_it_up():
    # reference 0: relative to atol (1e-3), not to 0
    near_zero = Diff.of([5e-4, 1e-9], [0.0, 0.0], RTOL, ATOL)
    assert near_zero.max_abs == pytest.approx(5e-4) and near_zero.max_rel == pytest.approx(0.5)
    assert near_zero.within
    # a reference above atol: relative to the reference itself
    assert Diff.of([2.2], [2.0], RTOL, ATOL).max_rel == pytest.approx(0.1)
    assert Diff.of([2e-4], [1e-4], RTOL, atol=1e-6).max_rel == pytest.approx(1.0)


def test_nan_on_one_side_is_an_infinite_difference():
    for values, reference in (([1.0, NAN], [1.0, 2.0]), ([1.0, 2.0], [1.0, NAN])):
        assert Diff.of(values, reference, RTOL, ATOL) == Diff(INF, INF, False, 2)


def test_nan_on_both_sides_counts_as_equal():
    assert Diff.of([NAN, 1.0], [NAN, 1.0], RTOL, ATOL) == Diff(0.0, 0.0, True, 2)


def test_inf_against_a_finite_reference_diverges():
    assert Diff.of([INF, 1.0], [3.0, 1.0], RTOL, ATOL) == Diff(INF, INF, False, 2)
    assert Diff.of([1.0], [-INF], RTOL, ATOL).within is False


def test_different_sizes_are_a_mismatch_not_a_partial_comparison():
    assert Diff.of([1.0, 2.0, 3.0], [1.0, 2.0], RTOL, ATOL) == Diff(INF, INF, False, 0)


def test_nothing_to_compare_agrees():
    assert Diff.of([], [], RTOL, ATOL) == Diff(0.0, 0.0, True, 0)


def test_combine_takes_the_worst_of_each_and_counts_every_number():
    diffs = [Diff(1e-6, 2e-5, True, 10), Diff(3e-7, 4e-4, True, 5), Diff(2e-2, 1e-3, False, 1)]
    assert combine(diffs) == Diff(2e-2, 1e-3, False, 16)
    assert combine([Diff(1e-6, 2e-5, True, 10)]) == Diff(1e-6, 2e-5, True, 10)
    assert combine([]) is None


def test_diff_arrays_compares_each_key_and_a_missing_key_is_a_mismatch():
    reference = {"dense/kernel": np.ones((2, 3)), "dense/bias": np.zeros(3)}
    values = {"dense/kernel": np.ones((2, 3)) + 0.5, "dense/bias": np.zeros(3)}
    assert diff_arrays(values, reference, RTOL, ATOL) == Diff(0.5, 0.5, False, 9)
    assert diff_arrays({"dense/kernel": np.ones((2, 3))}, reference, RTOL, ATOL) == Diff(INF, INF, False, 0)
    extra = {**reference, "dense_1/bias": np.zeros(1)}
    assert diff_arrays(extra, reference, RTOL, ATOL) == Diff(INF, INF, False, 0)
    assert diff_arrays({}, {}, RTOL, ATOL) == Diff(0.0, 0.0, True, 0)


def test_first_step_outside_is_one_based():
    reference = [0.7, 0.6, 0.5, 0.4]
    assert first_step_outside(reference, reference, RTOL, ATOL) is None
    assert first_step_outside([0.7, 0.6, 0.55, 0.4], reference, RTOL, ATOL) == 3
    assert first_step_outside([0.7005, 0.6, 0.5, 0.4], reference, RTOL, ATOL) is None  # inside the tolerance
    assert first_step_outside([NAN, 0.6, 0.5, 0.4], reference, RTOL, ATOL) == 1


def test_first_step_outside_with_different_lengths_is_the_first_missing_step():
    reference = [0.7, 0.6, 0.5, 0.4]
    assert first_step_outside([0.7, 0.6], reference, RTOL, ATOL) == 3  # stopped early
    assert first_step_outside([0.7, 0.6, 0.5, 0.4, 0.3], reference, RTOL, ATOL) == 5  # trained longer
    assert first_step_outside([0.7, 0.9], reference, RTOL, ATOL) == 2  # a bad step before the end wins
    assert first_step_outside([], reference, RTOL, ATOL) == 1


# --- FLOPs per sample, from stand-ins for Keras layers --------------------------------
# flops.py reads only a layer's class name, shapes and a few attributes; these stand-ins
# carry exactly those, so the arithmetic is checked without Keras.


def layer(kind: str, **attrs):
    stand_in = type(kind, (), {})()
    stand_in.__dict__.update(attrs)
    return stand_in


def shaped(*shape):
    return SimpleNamespace(shape=shape)


def dense(n_in: int, n_out: int, *leading: int):
    return layer("Dense", kernel=shaped(n_in, n_out), output=shaped(None, *leading, n_out), weights=[1])


def test_flops_of_the_benchmark_mlp_are_two_per_multiply_add():
    mlp = SimpleNamespace(layers=[layer("InputLayer"), dense(784, 256), dense(256, 256), dense(256, 10)])
    forward, unknown = forward_flops(mlp)
    assert forward == 2 * (784 * 256 + 256 * 256 + 256 * 10) == 537_600
    assert unknown == []
    assert step_flops(forward, "fit") == 1_612_800  # forward, input gradient, weight gradient
    assert step_flops(forward, "predict") == 537_600
    assert step_flops(None, "fit") is None


def test_flops_of_dense_on_a_sequence_count_every_step():
    assert forward_flops(SimpleNamespace(layers=[dense(8, 4, 10)])) == (2 * 10 * 8 * 4, [])


def test_flops_of_a_conv_count_every_output_position_in_either_layout():
    last = layer("Conv2D", kernel=shaped(3, 3, 1, 32), output=shaped(None, 26, 26, 32), data_format="channels_last")
    first = layer("Conv2D", kernel=shaped(3, 3, 1, 32), output=shaped(None, 32, 26, 26), data_format="channels_first")
    for conv in (last, first):
        assert forward_flops(SimpleNamespace(layers=[conv, layer("MaxPooling2D")])) == (2 * 26 * 26 * 9 * 32, [])


def test_flops_of_recurrent_layers_count_each_gate_at_each_step():
    def recurrent(kind):
        return layer(kind, cell=SimpleNamespace(units=16), input=shaped(None, 20, 8))

    per_gate = 2 * 20 * (8 + 16) * 16
    assert forward_flops(SimpleNamespace(layers=[recurrent("LSTM")]))[0] == 4 * per_gate == 61_440
    assert forward_flops(SimpleNamespace(layers=[recurrent("GRU")]))[0] == 3 * per_gate
    assert forward_flops(SimpleNamespace(layers=[recurrent("SimpleRNN")]))[0] == per_gate


def test_flops_of_self_attention_count_projections_scores_and_weighted_values():
    attention = layer(
        "MultiHeadAttention",
        num_heads=2,
        key_dim=8,
        value_dim=None,
        _build_shapes_dict={"query_shape": (None, 10, 16), "value_shape": (None, 10, 16)},
        _output_shape=None,
    )
    projections = 4 * 10 * 16 * 2 * 8  # query, key, value, output
    attend = 2 * 10 * 10 * 2 * 8  # scores and weighted values
    assert forward_flops(SimpleNamespace(layers=[attention])) == (2 * (projections + attend), [])


def test_flops_of_a_nested_model_add_up_and_unknown_layers_are_named_once():
    inner = layer("Sequential", layers=[dense(4, 4), layer("Mystery", weights=[1])])
    outer = SimpleNamespace(
        layers=[inner, layer("Mystery", weights=[1]), layer("Lambda", weights=[]), layer("Dropout"), dense(4, 2)]
    )
    assert forward_flops(outer) == (2 * (16 + 8), ["Mystery"])


def test_flops_are_unknown_when_shapes_cannot_be_read():
    never_called = layer("Dense", kernel=shaped(4, 2), weights=[1])  # no .output: a subclassed model's layer
    assert forward_flops(SimpleNamespace(layers=[dense(4, 4), never_called])) == (None, ["Dense"])


# --- a failed worker's message, from the tail of its log -------------------------------


def _traceback_of(exc: BaseException) -> str:
    try:
        raise exc
    except BaseException:
        return traceback.format_exc()


def test_last_error_line_of_a_python_traceback_is_the_exception():
    log = "Epoch 1/10\n" + _traceback_of(RuntimeError("this model does not build on tensorflow"))
    assert last_error_line(log) == "RuntimeError: this model does not build on tensorflow"


def test_last_error_line_takes_the_last_of_chained_exceptions():
    log = _traceback_of(KeyError("x")) + "\nDuring handling of the above exception, another exception occurred:\n\n"
    log += _traceback_of(ValueError("could not broadcast"))
    assert last_error_line(log) == "ValueError: could not broadcast"


def test_a_failed_jobs_message_is_its_exception_under_a_long_keras_message_and_jaxs_trailer(tmp_path):
    """What a layer drawing unseeded under jax.jit left (Keras 3.15): 14 lines after the exception's."""
    from backendlab.workers.runner import LOG, job_outcome

    message = "Exception encountered when calling GlobalNoise.call().\n\n[JAX RNG] use seeded random ops.\n\n```"
    message += "\n# a line\n" * 4 + "```\n\nArguments received by GlobalNoise.call():\n  \u2022 x=jnp.ndarray\n"
    message += "  \u2022 training=True\n--------------------\nFor simplicity, JAX has removed its internal frames."
    (tmp_path / LOG).write_text(_traceback_of(ValueError(message)))
    outcome = job_outcome("jax", tmp_path, 1, 1.0)
    assert outcome.status == "failed"
    assert outcome.message.startswith("ValueError: Exception encountered when calling GlobalNoise.call(). [JAX RNG]")


#: What Keras 3.15 printed for a Dense(4) on inputs of 30 features called with 5, with
#: its bold ANSI codes: the message spreads over several lines.
KERAS_ERROR = """\
Traceback (most recent call last):
  File "<string>", line 4, in <module>
  File "/site-packages/keras/src/utils/traceback_utils.py", line 122, in error_handler
    raise e.with_traceback(filtered_tb) from None
  File "/site-packages/keras/src/layers/input_spec.py", line 239, in assert_input_compatibility
    raise ValueError(
ValueError: Exception encountered when calling Sequential.call().

\x1b[1mInput 0 with name 'None' of layer 'dense' is incompatible with the layer: expected axis -1 of input \
shape to have value 30, but received input with shape (8, 5)\x1b[0m

Arguments received by Sequential.call():
  \u2022 inputs=jnp.ndarray(shape=(8, 5), dtype=float32)
  \u2022 training=None
"""


def test_last_error_line_joins_a_keras_message_strips_colors_and_stops_at_the_limit():
    line = last_error_line(KERAS_ERROR)
    assert line == (
        "ValueError: Exception encountered when calling Sequential.call(). Input 0 with name 'None' of layer "
        "'dense' is incompatible with the layer: expected axis -1 of input shape to have value 30, but "
        "received input with shape (8, 5) Arguments ..."
    )
    assert len(line) == 240 and "\x1b" not in line


def test_last_error_line_truncates_at_the_limit_and_keeps_short_messages_whole():
    log = _traceback_of(ValueError("x" * 500))
    assert last_error_line(log, limit=40) == "ValueError: " + "x" * 25 + "..."
    assert len(last_error_line(log)) == 240
    assert last_error_line(_traceback_of(ValueError("x" * 10)), limit=22) == "ValueError: " + "x" * 10


def test_last_error_line_without_an_exception_is_the_last_line():
    assert last_error_line("Epoch 1/2\n\x1b[32mloss: 0.61\x1b[0m\nKilled\n\n") == "Killed"
    assert last_error_line("") == ""
    assert last_error_line("KeyboardInterrupt\n") == "KeyboardInterrupt"


# --- JSON results ------------------------------------------------------------------


@dataclasses.dataclass
class Inner:
    name: str
    scores: tuple


@dataclasses.dataclass
class Outer:
    inner: Inner
    by_step: dict
    loss: float


def test_to_jsonable_turns_dataclasses_numpy_scalars_and_nan_into_json_values():
    value = Outer(Inner("jax", (np.float32(0.5), np.int64(3))), {1: np.bool_(True), "nan": np.float64(NAN)}, NAN)
    assert to_jsonable(value) == {
        "inner": {"name": "jax", "scores": [0.5, 3]},
        "by_step": {"1": True, "nan": None},
        "loss": None,
    }
    assert type(to_jsonable(np.int64(3))) is int and type(to_jsonable(np.float32(0.5))) is float


def test_write_json_writes_nan_as_null_and_reads_back(tmp_path):
    path = write_json(tmp_path / "deep" / "result.json", {"loss": [0.5, NAN], "epochs": np.int32(2)})
    assert path == tmp_path / "deep" / "result.json"
    assert json.loads(path.read_text()) == read_json(path) == {"loss": [0.5, None], "epochs": 2}
    assert path.read_text().endswith("}\n")


def _disk_full(*args):
    raise OSError(28, "No space left on device")


def test_write_json_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json(path, {"run": 1})
    write_json(path, {"run": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    monkeypatch.setattr(results.os, "replace", _disk_full)
    with pytest.raises(OSError, match="No space left"):  # failed while writing: the old file stays whole
        write_json(path, {"run": 3})
    monkeypatch.undo()
    with pytest.raises(TypeError):  # not serializable: the old file stays whole
        write_json(path, {"run": object()})
    assert read_json(path) == {"run": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


# --- the bench report, drawn from a BenchReport ------------------------------------


def synthetic_bench() -> BenchReport:
    machine = Machine(
        cpu="AMD EPYC 7B13",
        cores=2,
        platform="Linux-x86_64",
        python="3.11.7",
        keras="3.15.1",
        frameworks={"jax": "0.10.2", "torch": "2.13.0"},
        matmul_peak_gflops=160.0,
        matmul_peak_by_backend={
            "jax": {"device": "cpu:0", "gflops": 160.0, "n": 1024},
            "torch": {"device": "cpu", "gflops": 151.2, "n": 1024},
        },
    )
    keras_row = BenchRow(
        "jax", "keras", "mlp", "fit", 256, "True", 1, None, repeats=5, steps_per_repeat=8,
        samples_per_sec=52812.4, samples_per_sec_min=50100.0, samples_per_sec_max=53999.9, ms_per_step=4.847,
        first_step_s=1.234, peak_rss_mb=812.3, params=269322, flops_per_sample=537600.0, gflops_per_sec=85.2,
        fraction_of_peak=0.5325, native_ratio=0.68,
    )  # fmt: skip
    native_row = BenchRow(
        "jax", "native", "mlp", "fit", 256, "jax.jit", 1, None, samples_per_sec=77800.0,
        samples_per_sec_min=77000.0, samples_per_sec_max=78000.0, ms_per_step=3.29, first_step_s=0.5,
        peak_rss_mb=700.0, gflops_per_sec=125.5, fraction_of_peak=0.784,
    )  # fmt: skip
    not_applicable = BenchRow(
        "torch", "keras", "mlp", "fit", 256, "False", 32, 2, status="not_applicable",
        note="steps_per_execution > 1 is not supported on torch",
    )  # fmt: skip
    failed = BenchRow("torch", "keras", "cnn", "fit", 256, "False", 1, 2, status="failed", note="RuntimeError: a | b")
    return BenchReport(
        "quick",
        machine,
        [failed, not_applicable, native_row, keras_row],
        failures=[WorkerFailure("tensorflow", "crashed", "worker killed by signal SIGKILL", "")],
        wall_s=123.4,
    )


def test_bench_rows_are_ordered_by_model_then_backend_keras_before_native():
    rows = bench_report.sorted_rows(synthetic_bench())
    assert [(r.model, r.backend, r.impl, r.steps_per_execution) for r in rows] == [
        ("cnn", "torch", "keras", 1),  # models in the order the run met them
        ("mlp", "jax", "keras", 1),
        ("mlp", "jax", "native", 1),
        ("mlp", "torch", "keras", 32),
    ]


def test_bench_markdown_table_formats_every_number():
    lines = bench_report.markdown_table(synthetic_bench()).splitlines()
    assert lines[0] == "| " + " | ".join(bench_report.HEADERS) + " |"
    assert lines[2:] == [
        "| torch | keras | cnn | fit | 256 | jit=False spe=1 thr=2 | failed | RuntimeError: a / b "
        "|  |  |  |  |  |  |  |",
        "| jax | keras | mlp | fit | 256 | jit=True spe=1 thr=default | 52,812 | 50,100-54,000 | 4.85 | 1.23 | 812 "
        "| 85.2 | 53.2% | 0.68 |  |",
        "| jax | native | mlp | fit | 256 | jit=jax.jit spe=1 thr=default | 77,800 | 77,000-78,000 | 3.29 | 0.50 "
        "| 700 | 125.5 | 78.4% |  |  |",
        "| torch | keras | mlp | fit | 256 | jit=False spe=32 thr=2 | not applicable "
        "| steps_per_execution > 1 is not supported on torch |  |  |  |  |  |  |  |",
    ]


def test_bench_markdown_report_states_machine_peaks_failures_and_duration():
    text = bench_report.markdown_report(synthetic_bench())
    assert text.startswith("# backendlab bench: quick\n\nMachine: AMD EPYC 7B13, 2 cores; float32 matmul peak ")
    assert (
        "Machine: AMD EPYC 7B13, 2 cores; float32 matmul peak 160 GFLOP/s; Python 3.11.7, Keras 3.15.1, "
        "jax 0.10.2, torch 2.13.0.\n" in text
    )
    assert "Matmul peak per backend, GFLOP/s: jax 160 (cpu:0, n=1024), torch 151 (cpu, n=1024);" in text
    assert "a training step counts 3x the forward pass" in text
    assert "\n**tensorflow: worker crashed**: worker killed by signal SIGKILL\n" in text
    assert text.endswith("\nRun took 123 s.\n")


def test_bench_notes_give_each_reason_once_with_where_it_happened():
    assert bench_report.notes(synthetic_bench()) == [
        "failed: RuntimeError: a | b (torch keras cnn fit batch 256 spe 1)",
        "not applicable: steps_per_execution > 1 is not supported on torch (torch keras mlp fit batch 256 spe 32)",
    ]


def test_bench_terminal_table_shows_the_short_columns():
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(bench_report.rich_table(synthetic_bench()))
    text = console.export_text()
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
    assert rows == [
        ["torch", "keras", "cnn", "fit", "256", "spe=1", "failed", "", "", "", "", "", ""],
        ["jax", "keras", "mlp", "fit", "256", "spe=1", "52,812", "4.85", "1.23", "85.2", "53.2%", "0.68", ""],
        ["jax", "native", "mlp", "fit", "256", "spe=1", "77,800", "3.29", "0.50", "125.5", "78.4%", "", ""],
        ["torch", "keras", "mlp", "fit", "256", "spe=32", "not applicable", "", "", "", "", "", ""],
    ]
    assert "float32 matmul peak 160 GFLOP/s" in text


def test_bench_report_without_a_measured_peak_says_so():
    report = synthetic_bench()
    report.machine.matmul_peak_gflops, report.machine.matmul_peak_by_backend = None, {}
    report.wall_s = None
    text = bench_report.markdown_report(report)
    assert "float32 matmul peak not measured;" in text
    assert 'Matmul peak per backend, GFLOP/s: none; "of peak"' in text
    assert "Run took" not in text


def test_bench_report_survives_a_json_round_trip():
    report = synthetic_bench()
    again = BenchReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
