"""The parity helper for people who write their own layers: ``backendlab.testing.assert_backends_agree``,
its pytest fixture ``backends_agree`` and ``backendlab check-layer``.

The tests marked ``cross`` run every backend in the session's warm pool (conftest's ``pool``); this
process itself imports no framework.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from helpers import ROOT, floats, parity_layer, run, run_cli

from backendlab.testing import assert_backends_agree

ALL = ["jax", "tensorflow", "torch"]


@pytest.mark.parametrize(
    ("factory", "inputs", "weights"),
    [
        ("dense", floats(4, 16), ["dense/kernel", "dense/bias"]),
        ("conv2d", floats(2, 8, 8, 3), ["conv2d/kernel", "conv2d/bias"]),
        ("lstm", floats(3, 7, 5), [f"lstm/lstm_cell/{w}" for w in ("kernel", "recurrent_kernel", "bias")]),
    ],
)
def test_zoo_layers_agree_forward_backward_and_saved(pool, factory, inputs, weights):
    report = assert_backends_agree(parity_layer(factory), inputs, pool=pool)
    assert report.reference == "jax" and report.backends == ALL
    assert not report.failures
    gradients = ["gradient of input 0", *(f"gradient of {w}" for w in weights)]
    for backend in ("tensorflow", "torch"):
        assert [c.what for c in report.checks if c.backend == backend and " vs " in c.label] == ["output 0", *gradients]
    saved = [c.what for c in report.checks if ".keras" in c.what]
    assert saved == [f"{saver}'s .keras loaded on {loader}" for saver in ALL for loader in ALL]
    # Agreeing means float32 rounding apart, not merely inside the tolerance.
    assert max(c.max_abs for c in report.checks) < 1e-5


def test_token_ids_have_no_input_gradient_and_are_skipped(pool):
    report = assert_backends_agree(parity_layer("embedding"), np.arange(28).reshape(4, 7) % 20, pool=pool, saving=False)
    assert {c.what for c in report.checks} == {"output 0", "gradient of sequential/embedding/embeddings"}
    assert report.notes == {b: ["input 0 is not a float: no gradient"] for b in ALL}


def test_a_custom_layer_with_its_own_build_agrees_in_training_mode_too(pool):
    report = assert_backends_agree(parity_layer("gated_residual"), floats(4, 10), pool=pool, training=True)
    assert not report.failures
    torch = [c.what for c in report.checks if c.backend == "torch" and " vs " in c.label]
    assert torch == [
        "output 0",
        "output 0 (training)",
        "gradient of input 0",
        *(f"gradient of gated_residual/{w}" for w in ("kernel", "back", "gate")),
    ]
    assert report.training_vs_inference == {b: 0.0 for b in ALL}  # no dropout, no batch statistics
    assert sum(".keras" in c.what for c in report.checks) == 9


def test_integer_outputs_are_compared_exactly_and_weightless_layers_are_fine(pool):
    scores = assert_backends_agree(parity_layer("scores"), floats(4, 6), pool=pool, saving=False)
    argmax = [c for c in scores.checks if c.what == "output 1"]
    assert [(c.backend, c.max_abs, c.ok) for c in argmax] == [("tensorflow", 0.0, True), ("torch", 0.0, True)]
    softmax = assert_backends_agree(parity_layer("softmax"), floats(4, 6), pool=pool, backends=["torch", "jax"])
    assert softmax.reference == "torch"
    assert [c.label for c in softmax.checks if " vs " in c.label] == [
        "jax vs torch, output 0",
        "jax vs torch, gradient of input 0",
    ]


#: What the helper says of a Dense layer that computes 1% more on torch (inputs floats(4, 6), seed 0).
SKEW_LINES = [
    r"7 of 17 checks disagree across backends \(layer .*parity_layers\.py:skewed_on_torch, reference jax, "
    r"rtol=1e-05, atol=1e-06\):",
    *(
        rf"{what}: max abs 0\.0[23]\d+, max rel (0\.01|0\.0099) \(tolerance rtol=1e-05, atol=1e-06\)"
        for what in (
            "torch vs jax, output 0",
            "torch vs jax, gradient of input 0",
            "torch vs jax, gradient of skewed/kernel",
            "jax's .keras loaded on torch",
            "tensorflow's .keras loaded on torch",
            "torch's .keras loaded on jax",
            "torch's .keras loaded on tensorflow",
        )
    ),
]


def test_a_layer_that_skews_on_torch_is_caught_and_torch_is_named(pool):
    with pytest.raises(AssertionError) as raised:
        assert_backends_agree(parity_layer("skewed_on_torch"), floats(4, 6), pool=pool)
    lines = str(raised.value).splitlines()
    assert len(lines) == len(SKEW_LINES)
    for line, pattern in zip(lines, SKEW_LINES):
        assert re.fullmatch(pattern, line), line
    # The bias's gradient is the cotangent's sum whatever the input: the skew does not reach it.
    bias = [c for c in raised.value.report.checks if c.what == "gradient of skewed/bias"]
    assert all(c.ok for c in bias)


def test_a_layer_that_fails_to_build_on_one_backend_is_an_assertion_with_its_error(pool):
    with pytest.raises(AssertionError) as raised:
        assert_backends_agree(parity_layer("fails_on_tensorflow"), floats(4, 6), pool=pool)
    assert (
        str(raised.value)
        == "the layer check failed on tensorflow: ValueError: this layer refuses to build on tensorflow"
    )


def test_the_backends_agree_fixture_runs_on_the_sessions_warm_workers(backends_agree, pool):
    assert backends_agree.keywords["pool"] is pool
    report = backends_agree(parity_layer("dense"), floats(4, 16), gradients=False, saving=False)
    assert [(c.label, c.ok) for c in report.checks] == [
        ("tensorflow vs jax, output 0", True),
        ("torch vs jax, output 0", True),
    ]


def test_check_layer_exits_0_when_backends_agree_and_1_when_one_skews():
    good = run_cli("check-layer", parity_layer("gated_residual"), "--input-shape", "4,10", "--backends", "jax,torch")
    assert good.returncode == 0, good.stderr
    lines = good.stdout.splitlines()
    assert lines[0].startswith("ok    torch vs jax, output 0: max abs ")
    assert lines[-1] == "all 9 checks agree across jax, torch"
    bad = run_cli(
        "check-layer", parity_layer("skewed_on_torch"), "--input-shape", "4,6", "--backends", "jax,torch", "--no-saving"
    )
    assert bad.returncode == 1
    assert re.match(r"FAIL  torch vs jax, output 0: max abs \S+, max rel 0\.01 \(tolerance", bad.stdout)
    assert bad.stderr.startswith("backendlab: check-layer: 3 of 4 checks disagree across backends (layer ")
    assert "torch vs jax, gradient of skewed/kernel: max abs " in bad.stderr


def test_the_readme_example_passes_as_written():
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/test_my_layer.py"], cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
