"""Whom compare blames, and for what, on models where a backend differs by Keras's own doing.

``fixtures/blame_models.py``: ``l1_zero_bias``, where the reference (JAX) is the odd one out, and
``raw_batchnorm``, where only TensorFlow's evaluation differs. One compare run per model, one epoch,
shared by the tests of that model.
"""

from __future__ import annotations

import json

import pytest
from helpers import FIXTURES, report_json

from backendlab.compare import compare
from backendlab.compare.locate import DEFAULT_THRESHOLD

BLAME = FIXTURES / "blame_models.py"


@pytest.fixture(scope="module")
def reference_alone(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("l1")
    return compare(model=f"{BLAME}:l1_zero_bias", epochs=1, portability=False, pool=pool, out=str(out)), out


@pytest.fixture(scope="module")
def evaluation_alone(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("bn")
    options = {"model": f"{BLAME}:raw_batchnorm", "data": f"{BLAME}:raw_features", "epochs": 1}
    return compare(**options, portability=False, pool=pool, out=str(out)), out


def test_the_reference_that_alone_differs_is_named_the_odd_one_out(reference_alone):
    report, out = reference_alone
    message = (
        "jax is the odd one out: tensorflow and torch agree with each other, and jax differs from both; "
        "the differences are measured against tensorflow, not jax"
    )
    assert report.odd_one_out["message"] == message and report.odd_one_out["by"] == "majority"
    assert report.reference == "tensorflow"
    verdicts = {name: r.verdict for name, r in report.backends.items()}
    assert verdicts == {"jax": "diverge", "tensorflow": "agree", "torch": "agree"}
    assert report.verdict == "diverge" and report.exit_code == 1  # the backends do differ
    assert report.backends["torch"].differences["weights"].max_abs < 1e-5
    assert report_json(out)["odd_one_out"]["message"] == message
    assert f"**{message}.**" in (out / "report.md").read_text()


def test_the_odd_one_out_is_located_where_it_parts_the_slope_of_l1_at_zero(reference_alone):
    report, out = reference_alone
    assert [name for name, r in report.backends.items() if r.divergence] == ["jax"]
    d = report.backends["jax"].divergence
    print(json.dumps(d))
    assert (d["step"], d["during"], d["phase"], d["layer"]) == (1, "training", "gradient", "head")
    assert d["variable"].endswith("head/bias")
    # JAX takes |x|'s slope at 0 as 1, the others as 0: the bias gradient differs by the L1 coefficient.
    assert d["abs"] == pytest.approx(0.05, rel=1e-4) and d["upstream_max_rel"] < DEFAULT_THRESHOLD
    # Taken apart on jax and on tensorflow, the reference in its place; torch, which agrees, is left alone.
    assert sorted(p.name for p in (out / "locate" / "step-1").iterdir()) == ["jax", "replay", "state.npz", "tensorflow"]
    assert json.loads((out / "locate" / "step-1" / "tensorflow" / "result.json").read_text())["backend"] == "tensorflow"


def test_a_difference_in_evaluation_alone_is_blamed_on_evaluation(evaluation_alone):
    report, out = evaluation_alone
    tf = report.backends["tensorflow"]
    assert report.backends["torch"].verdict == "agree" and tf.verdict == "diverge"
    assert all(tf.differences[q].within for q in ("step_losses", "epoch_metrics", "weights", "predictions"))
    test, ref = tf.test["loss"], report.backends["jax"].test["loss"]
    assert tf.message == (
        f"training agrees; evaluation differs in the loss on tensorflow (test loss {test:.4g} against {ref:.4g} on jax)"
        "; beyond 10x the noise floor (what a 1-ulp change of the start does): test_metrics"
    )  # the twins trained from a start 1 ulp away move the test loss far less than that
    assert report.odd_one_out["backend"] == "tensorflow" and report.reference == "jax"


def test_the_evaluation_is_taken_apart_and_its_loss_named(evaluation_alone):
    report, out = evaluation_alone
    tf = report.backends["tensorflow"]
    d = tf.divergence
    print(json.dumps(d))
    assert (d["during"], d["step"], d["phase"]) == ("evaluate", None, "loss")
    assert d["explanation"].startswith("the total loss (binary_crossentropy) differs by ")
    assert " while the forward pass agrees " in d["explanation"] and d["upstream_max_rel"] < DEFAULT_THRESHOLD
    assert [row["phase"] for row in tf.divergence_phases] == ["forward", "loss", "metrics"]
    assert {layer["name"] for layer in tf.divergence_layers["reached"]} == {"norm", "hidden", "head"}
    # The probe computes evaluate's own numbers: each backend's test loss, from the reference's trained weights.
    for name in ("jax", "tensorflow"):
        probed = json.loads((out / "locate" / "evaluate" / name / "result.json").read_text())["loss"]
        assert probed == pytest.approx(report.backends[name].test["loss"], rel=1e-4), name
    md = (out / "report.md").read_text()
    assert f"**tensorflow**: evaluation of the test set first differs in loss: {d['explanation']}" in md
    assert "| metrics | 1 |" in md  # accuracy: it agrees
