"""The noise floor on real backends: a real skew of 1e-4 stays DIVERGE, rounding alone agrees within rounding.

One compare of ``fixtures/rounding_models.py:skewed`` (one epoch of a small dense network, 15 steps) with a
tolerance tight enough (rtol 1e-7) that every backend leaves it, so that the twins run everywhere: torch
multiplies one layer's output by 1 + 1e-4, TensorFlow computes the same model as JAX does.

Measured on this model (the same run from the command line): a skew of 1e-4 is 798x the floor at its worst
step, 1e-5 is 81x (DIVERGE), 1e-6 is 10x (within rounding, at the factor's edge): the smallest skew caught is
1e-5 relative.
"""

from __future__ import annotations

import pytest
from helpers import FIXTURES, report_json

from backendlab.compare import compare
from backendlab.compare.floor import FACTOR, TWINS
from backendlab.compare.results import AGREE_ROUNDING

SKEWED = f"{FIXTURES / 'rounding_models.py'}:skewed"


@pytest.fixture(scope="module")
def skewed(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("skew")
    report = compare(
        model=SKEWED,
        data="breast_cancer",
        epochs=1,
        rtol=1e-7,
        atol=1e-9,
        portability=False,
        pool=pool,
        out=str(out),
        env={"BACKENDLAB_TEST_SKEW": "1e-4"},
    )
    return report, report_json(out)


def test_a_real_skew_of_1e4_is_still_diverge_far_beyond_the_floor(skewed):
    report, written = skewed
    torch = written["backends"]["torch"]
    assert report.verdict == "diverge" and report.exit_code == 1
    assert torch["verdict"] == "diverge"
    assert torch["floor"]["worst_ratio"] > 10 * FACTOR, torch["floor"]  # measured 798x
    assert "beyond 10x the noise floor (what a 1-ulp change of the start does): step " in torch["message"]
    # Beyond the floor, it is located as before: the skewing layer's forward.
    assert (torch["divergence"]["phase"], torch["divergence"]["layer"]) == ("forward", "skew")


def test_rounding_alone_agrees_within_rounding_and_the_floor_is_in_report_json(skewed):
    report, written = skewed
    tf = written["backends"]["tensorflow"]
    assert tf["verdict"] == AGREE_ROUNDING, tf["message"]
    assert tf["message"].startswith("outside rtol=1e-07, atol=1e-09, but within rounding: at every step")
    assert tf["divergence"] is None  # within rounding: nothing to locate
    steps = len(tf["step_losses"])
    assert steps == 15 and len(tf["floor"]["step_floor"]) == len(tf["floor"]["step_difference"]) == steps
    assert tf["floor"]["twins"] == TWINS and 0 < max(tf["floor"]["step_floor"]) < 1e-5
    # Every backend with twins has its amplification: 15 steps of a small dense network barely grow a 1-ulp
    # change (measured 1.0 to 2.1 float32 epsilons); each twin's training is in the time line.
    assert all(0 < written["backends"][b]["amplification"] < 100 for b in ("jax", "tensorflow", "torch"))
    assert set(written["timing"]["twins_s"]) == {"jax", "tensorflow", "torch"}


def test_an_agreeing_run_trains_no_twins(pool, tmp_path):
    report = compare(model=SKEWED, data="breast_cancer", epochs=1, backends=["jax", "tensorflow"], portability=False,
                     pool=pool, out=str(tmp_path))  # fmt: skip
    assert report.verdict == "agree" and report.timing["twins_s"] == {}
    assert not (tmp_path / "floor").exists()
