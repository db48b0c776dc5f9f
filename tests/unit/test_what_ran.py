"""compare says what really ran and holds it to its dtype's tolerances: synthetic worker outcomes through the
pure build_report and the report's views, no framework, no process.

tests/cross/test_mixed_precision.py does the same on a real mixed_bfloat16 model on every backend.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import strict_json
from rich.console import Console

from backendlab.compare.locate import DEFAULT_THRESHOLD, locate, threshold_for
from backendlab.compare.report import markdown, ran_text, terminal_table
from backendlab.compare.results import CompareOptions, CompareReport, loosest, tolerances_for
from backendlab.compare.verdict import TrainedRun, build_report
from backendlab.compare.worker import save_npz
from backendlab.results import write_json
from backendlab.workers.protocol import Outcome

BF16_ULP = 2.0**-8  # bfloat16's spacing between 0.5 and 1: one rounding step of a sigmoid's output there


def _facts(policy="float32", computes=("float32",), loop="fit", jit=True, **more) -> dict:
    """A worker's account of what ran (compare.worker's ``ran``)."""
    return {
        "optimizer": {"class": "SGD", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True},
        "loss": "binary_crossentropy",
        "batch_size": 32,
        "last_batch_size": 7,
        "steps_per_epoch": 15,
        "dtype_policy": policy,
        "compute_dtypes": list(computes),
        "loop": loop,
        "jit_compile": jit,
        "devices": 1,
        "processes": 1,
        **more,
    }


def _trained(backend, facts: dict, shift=0.0, optimizer=("sgd", 0.01)) -> TrainedRun:
    result = {
        "info": {"framework_version": "1.0", "keras_version": "3.15.1"},
        "config": {"optimizer": optimizer[0], "learning_rate": optimizer[1]},
        "start_checksum": "abc",
        "train_time_s": 1.5,
        "history": {"loss": [0.6, 0.5]},
        "step_losses": [0.7, 0.6, 0.5],
        "test": {"loss": 0.45},
        "nonfinite": None,
        "stochastic_layers": [],
        "ran": facts,
    }
    predictions = np.array([0.5, 0.625, 0.75, 0.875], np.float32)
    arrays = {
        "weights": {"w/0": np.linspace(-1, 1, 6, dtype=np.float32)},
        "predictions": {"out": predictions + np.float32(shift)},
        "initial_predictions": {"out": predictions},
    }
    return TrainedRun(Outcome(backend, "ok", 0, 2.0, result, "", ""), arrays)


def _report(opts: CompareOptions, facts: dict, shift: float):
    trained = {"jax": _trained("jax", facts), "torch": _trained("torch", facts, shift)}
    return build_report(opts, data="breast_cancer", reference="jax", planned=list(trained), trained=trained)


def _title(report) -> str:
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(terminal_table(report))
    return " ".join(console.export_text().split())


def test_a_bfloat16_model_is_held_to_bfloat16s_tolerances_and_the_report_names_them():
    bf16 = _facts("mixed_bfloat16", ("bfloat16",))
    report = _report(CompareOptions(), bf16, shift=BF16_ULP)  # every prediction one rounding step apart
    c = report.criterion
    assert (c.kind, c.dtype_policy, c.compute_dtype, c.rtol, c.atol) == (
        "exact",
        "mixed_bfloat16",
        "bfloat16",
        0.016,
        0.01,
    )
    assert c.source == "the bfloat16 defaults"
    assert (report.settings["rtol"], report.settings["atol"]) == (0.016, 0.01)
    assert report.verdict == "agree" and report.backends["torch"].differences["predictions"].max_abs == BF16_ULP
    assert (
        "rtol=0.016 atol=0.01 (exact; dtype policy mixed_bfloat16, bfloat16 compute: the bfloat16 defaults)"
        in _title(report)
    )
    assert (
        "Tolerance: |a - ref| <= 0.01 + 0.016 * |ref| "
        "(exact; dtype policy mixed_bfloat16, bfloat16 compute: the bfloat16 defaults)." in markdown(report)
    )

    # The same numbers from a float32 model are a real difference.
    f32 = _report(CompareOptions(), _facts(), shift=BF16_ULP)
    assert (f32.criterion.rtol, f32.criterion.atol, f32.criterion.compute_dtype) == (1e-3, 1e-3, "float32")
    assert f32.verdict == "diverge"
    assert (
        f32.backends["torch"].message
        == "training agrees; predict differs on torch (predictions up to 3.91e-03 from jax's)"
    )
    assert "rtol=0.001 atol=0.001 (exact; dtype policy float32: the float32 defaults)" in _title(f32)


def test_tolerances_given_win_over_the_dtypes_defaults():
    bf16 = _facts("mixed_bfloat16", ("bfloat16",))
    one = _report(CompareOptions(rtol=1e-3), bf16, shift=BF16_ULP)
    assert (one.criterion.rtol, one.criterion.atol, one.criterion.given) == (1e-3, 0.01, ["rtol"])
    assert one.criterion.source == "rtol given, the other the bfloat16 default"
    both = _report(CompareOptions(rtol=1e-3, atol=1e-3), bf16, shift=BF16_ULP)
    assert (both.criterion.rtol, both.criterion.atol, both.criterion.source) == (1e-3, 1e-3, "given")
    assert both.verdict == "diverge"


def test_the_dtype_that_rounds_most_sets_the_defaults():
    # A float32 output layer on a mixed_bfloat16 model: its other layers still round to bfloat16.
    assert loosest(["float32", "bfloat16"]) == "bfloat16"
    assert loosest(["float16", "float32"]) == "float16"
    assert loosest([]) == loosest(None) == loosest(["int32"]) == "float32"
    assert tolerances_for("float16") == (2e-3, 1e-3)
    assert tolerances_for("float64") == tolerances_for("float32") == (1e-3, 1e-3)


def test_the_header_and_report_md_state_what_ran_not_the_flags(tmp_path):
    adam = {"class": "Adam", "learning_rate": 0.004999999888241291, "amsgrad": True}
    facts = {"jax": ("fit", True), "tensorflow": ("fit", False), "torch": ("custom", False)}
    trained = {
        name: _trained(
            name,
            _facts(loop=loop, jit=jit, optimizer=adam, batch_size=16, last_batch_size=16, steps_per_epoch=4, devices=2),
            optimizer=("adam", 0.004999999888241291),
        )
        for name, (loop, jit) in facts.items()
    }
    report = build_report(
        CompareOptions(), data="pipes.py:generator", reference="jax", planned=list(trained), trained=trained
    )
    ran = (
        "optimizer Adam (learning_rate=0.005, amsgrad=True), loss binary_crossentropy; batch 16, 4 steps an epoch; "
        "dtype policy float32; 2 devices, 1 process; jax fit, tensorflow fit, torch custom loop, "
        "jit_compile jax on, tensorflow off, torch off"
    )
    assert ran_text(report) == ran
    assert report.settings["batch_size"] == 16  # the flag's default was 32: the pipeline batched by 16
    assert report.settings["optimizer"] == "adam"
    md = markdown(report)
    assert f"What ran: {ran}." in md and "sgd" not in md.lower()
    assert "compare: mlp on pipes.py:generator, 10 epochs, batch 16; reference jax;" in _title(report)
    # report.json read back draws the same report.md
    write_json(tmp_path / "report.json", report)
    again = CompareReport.from_dict(strict_json((tmp_path / "report.json").read_text()))
    assert markdown(again) == md


def test_a_last_partial_batch_a_wrapped_optimizer_and_losses_per_output_are_named():
    scaled = {"class": "Adam", "learning_rate": 0.001, "wrapped_by": "LossScaleOptimizer"}
    facts = _facts("mixed_float16", ("float16",), optimizer=scaled, processes=2, loss={"y1": "mse", "y2": "mae"})
    trained = {"jax": _trained("jax", facts)}
    report = build_report(CompareOptions(), data="d", reference="jax", planned=["jax"], trained=trained)
    assert ran_text(report) == (
        "optimizer LossScaleOptimizer(Adam (learning_rate=0.001)), loss y1: mse, y2: mae; "
        "batch 32 (the last 7), 15 steps an epoch; dtype policy mixed_float16; 1 device, 2 processes; "
        "fit, jit_compile on"
    )
    assert (report.criterion.rtol, report.criterion.atol) == (2e-3, 1e-3)


def test_nothing_trained_says_so_and_keeps_the_float32_defaults():
    failed = TrainedRun(Outcome("jax", "crashed", -9, 1.0, None, "killed", ""), {})
    report = build_report(CompareOptions(), data="d", reference="jax", planned=["jax"], trained={"jax": failed})
    assert report.ran == {} and report.criterion.dtype_policy is None
    assert (report.criterion.rtol, report.criterion.atol) == (1e-3, 1e-3)
    assert ran_text(report) == "nothing trained (asked: batch 32, optimizer sgd)"
    assert "(exact; no dtype policy reported, float32 compute: the float32 defaults)" in _title(report)


def test_floats_narrower_than_float32_are_saved_as_float32_with_every_value_kept(tmp_path):
    half = np.array([0.1, -2.5, 65504.0, 6e-8], np.float16)
    save_npz(tmp_path / "a.npz", {"half": half, "ints": np.arange(3, dtype=np.int32), "f32": np.ones(2, np.float32)})
    with np.load(tmp_path / "a.npz") as saved:
        assert saved["half"].dtype == np.float32 and saved["half"].tolist() == half.astype(np.float32).tolist()
        assert saved["ints"].dtype == np.int32 and saved["f32"].dtype == np.float32


def _probe(rel: float) -> tuple[dict, dict, dict]:
    """A reference probe and another backend's whose first layer's output is ``rel`` (of its largest) apart."""
    rng = np.random.default_rng(0)
    ref = {
        "forward/dense#0/0": rng.uniform(0.5, 1.0, (8, 4)).astype(np.float32),
        "gradient/dense/kernel": rng.normal(size=(4, 4)).astype(np.float32),
    }
    mine = {**ref, "forward/dense#0/0": ref["forward/dense#0/0"] + np.float32(rel)}
    manifest = {
        "places": [
            {"key": "forward/dense#0/0", "phase": "forward", "layer": "dense", "layer_class": "Dense"},
            {"key": "gradient/dense/kernel", "phase": "gradient", "layer": "dense", "variable": "dense/kernel"},
        ]
    }
    return ref, mine, manifest


def test_the_locator_takes_bfloat16_rounding_for_rounding_and_still_names_a_real_difference():
    assert threshold_for("float32") == DEFAULT_THRESHOLD and threshold_for("bfloat16") == pytest.approx(0.156, 1e-2)
    ref, mine, manifest = _probe(BF16_ULP)
    found = locate(
        ref, manifest, mine, manifest, step=1, threshold_rel=threshold_for("bfloat16"), compute_dtype="bfloat16"
    )
    assert found.phase is None and "is bfloat16 rounding spread over the whole step" in found.explanation
    as_float32 = locate(ref, manifest, mine, manifest, step=1)  # the same gap is far beyond float32's rounding
    assert (as_float32.phase, as_float32.layer) == ("forward", "dense")
    ref, mine, manifest = _probe(0.3)
    real = locate(
        ref, manifest, mine, manifest, step=1, threshold_rel=threshold_for("bfloat16"), compute_dtype="bfloat16"
    )
    assert (real.phase, real.layer) == ("forward", "dense")
