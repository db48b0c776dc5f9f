"""What compare's report says about the shared start: which variables were drawn from the seed, which kept."""

from __future__ import annotations

import json

import numpy as np

from backendlab.compare.facts import shared_start
from backendlab.compare.report import markdown
from backendlab.compare.results import CompareOptions, CompareReport
from backendlab.compare.verdict import TRAIN_ARRAYS, TrainedRun, build_report
from backendlab.results import to_jsonable
from backendlab.workers.protocol import Outcome

DREW = {"drawn": ["seq/hidden/kernel", "seq/hidden/bias"], "kept": ["norm/mean", "norm/variance"], "fallback": []}
LOADED = {"drawn": [], "kept": [], "fallback": []}  # a backend that loaded the start another drew


def _trained(backend: str, start_variables: dict | None, status: str = "ok") -> TrainedRun:
    result = {
        "info": {"framework_version": "1.0", "keras_version": "3.15.1"},
        "start_checksum": "abc",
        "train_time_s": 1.0,
        "history": {"loss": [0.5]},
        "step_losses": [0.6, 0.5],
        "test": {"loss": 0.5},
        "nonfinite": None,
        "stochastic_layers": [],
        "start_variables": start_variables,
    }
    arrays = {name: {"out": np.full(3, 0.25, np.float32)} for name in TRAIN_ARRAYS}
    return TrainedRun(Outcome(backend, status, 0, 1.0, result if status == "ok" else None, "", ""), arrays)


def test_the_start_is_the_one_the_first_backend_drew():
    trained = {"jax": _trained("jax", DREW), "torch": _trained("torch", LOADED)}
    assert shared_start(trained, ["jax", "torch"]) == {"made_by": "jax", **DREW}
    # jax failed before it drew anything: torch drew the start the others loaded.
    trained = {"jax": _trained("jax", None, "crashed"), "torch": _trained("torch", DREW)}
    assert shared_start(trained, ["jax", "torch"])["made_by"] == "torch"
    assert shared_start({"jax": _trained("jax", LOADED)}, ["jax"]) == {}  # --init backend: nothing drawn


def test_report_json_and_markdown_name_the_kept_variables():
    trained = {"jax": _trained("jax", DREW), "torch": _trained("torch", LOADED)}
    report = build_report(
        CompareOptions(), data="mine.py:data", reference="jax", planned=["jax", "torch"], trained=trained
    )
    assert report.start["kept"] == ["norm/mean", "norm/variance"]
    written = json.loads(json.dumps(to_jsonable(report)))  # as report.json holds it
    assert written["start"] == {"made_by": "jax", **DREW}
    assert CompareReport.from_dict(written).start == report.start
    assert (
        "Every backend started from the same weights (checksums below). Values the model's build set rather than "
        "drew at random were kept: `norm/mean`, `norm/variance`." in markdown(report)
    )


def test_markdown_says_nothing_of_a_start_that_kept_nothing():
    trained = {"jax": _trained("jax", {**DREW, "kept": []}), "torch": _trained("torch", LOADED)}
    report = build_report(
        CompareOptions(), data="mine.py:data", reference="jax", planned=["jax", "torch"], trained=trained
    )
    assert "Every backend started from the same weights (checksums below).\n" in markdown(report)
