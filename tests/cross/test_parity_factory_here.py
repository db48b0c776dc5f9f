"""A layer factory defined in the test file itself, as a user writes one: the workers import this file by its
path. So it imports only what the workers can import too (tests/helpers.py is on pytest's path, not theirs).
"""

from __future__ import annotations

import numpy as np

from backendlab.testing import assert_backends_agree


def dense_in_this_file():
    """A factory in the test file itself."""
    import keras

    return keras.layers.Dense(3, use_bias=False)


def test_a_factory_defined_in_the_test_file_itself_works(pool):
    inputs = np.random.default_rng(0).standard_normal((5, 4)).astype("float32")
    report = assert_backends_agree(dense_in_this_file, inputs, pool=pool, backends=["torch", "tensorflow"])
    assert report.factory.endswith("tests/cross/test_parity_factory_here.py:dense_in_this_file")
    assert [c.label for c in report.checks][:3] == [
        "tensorflow vs torch, output 0",
        "tensorflow vs torch, gradient of input 0",
        "tensorflow vs torch, gradient of dense/kernel",
    ]
    assert not report.failures
