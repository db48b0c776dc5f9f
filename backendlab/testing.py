"""Parity checks for people who write their own layers: does it compute the same on every backend?

    from backendlab.testing import assert_backends_agree

    def make_layer():                 # at module level: the workers import it from this file
        return MyLayer(8)

    def test_my_layer():
        assert_backends_agree(make_layer, np.random.default_rng(0).standard_normal((4, 16)).astype("float32"))

Each backend runs in a warm pool worker (:mod:`backendlab.workers.runner`); the orchestrator
(:mod:`backendlab.layers.check`, re-exported here) imports no framework. The first backend (the
reference) builds the layer on the inputs and writes its weights; the others build it and take
those weights, in the same order. Then, each against the reference:

* the outputs in inference mode (and in training mode with ``training=True``; each backend's
  own training-vs-inference gap is recorded, not asserted);
* the gradients of ``sum(outputs * cotangent)``, a fixed seeded cotangent, with respect to each
  float input and each trainable weight, by each backend's own autodiff (``jax.grad``,
  ``tf.GradientTape``, torch autograd); integer inputs (token ids) have none and are skipped;
* with ``saving=True``, the layer (wrapped in a Functional model if it is not a Model) is saved
  as ``.keras`` on every backend and loaded on every backend, the saver's own included; the
  loaded model's outputs are compared with the saver's.

Floats agree when ``|x - ref| <= atol + rtol * |ref|`` (NumPy's allclose rule), with
``rtol=1e-5, atol=1e-6`` by default: float32 rounding differs between XLA, Eigen and ATen by
around 1e-7 relative, so these pass for layers that compute the same thing and catch one that
does not. Non-float outputs (argmax, masks) must be equal. Random layers (Dropout) draw
different numbers on each backend, so compare them in inference mode only.
"""

from __future__ import annotations

from backendlab.layers.check import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    JOB_TIMEOUT_S,
    BackendsDisagree,
    Check,
    ParityReport,
    assert_backends_agree,
    factory_spec,
)

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "JOB_TIMEOUT_S",
    "BackendsDisagree",
    "Check",
    "ParityReport",
    "assert_backends_agree",
    "factory_spec",
]
