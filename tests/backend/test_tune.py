"""``backendlab tune``: every setting timed and judged against the backend's default settings.

One tiny tune per backend session, shared by the module: two user models on raw sensor
readings (tests/fixtures/tune_models.py). Under ``mixed_bfloat16`` one loses its inputs'
signal (the parity verdict must catch it) and the other raises (a crashed setting). No test
asserts a speed: speeds are measured by ``backendlab tune`` itself, never asserted.
"""

from __future__ import annotations

import os

import pytest
from helpers import FIXTURES
from known_differences import TUNE_EAGER_ONLY

from backendlab.backends import BACKENDS
from backendlab.results import read_json
from backendlab.runspec import RunSpec
from backendlab.tune.grid import Grid, Setting

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
    jit = (False,) if backend in TUNE_EAGER_ONLY else (True, False)
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
    # Each row's thread count is the one its framework ran, a number even where it kept its own default.
    ran = {r["threads"] for r in saved["rows"]}
    assert len(ran) == 1 and isinstance(next(iter(ran)), int) and 1 <= next(iter(ran)) <= os.cpu_count()


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
