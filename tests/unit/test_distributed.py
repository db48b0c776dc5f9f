"""Data-parallel training on each backend's own engine matches one-device training."""

from __future__ import annotations

import numpy as np
import pytest

from backendlab.errors import UsageError
from backendlab.runspec import RunSpec
from backendlab.training import pad_last_batch, prepare


def test_the_last_batch_is_padded_with_zero_weight_copies_for_fit():
    order, weights = pad_last_batch(np.arange(100, 555), RunSpec(devices=2, batch_size=64))
    assert order.tolist() == [*range(100, 555), 548]  # the last batch's first sample again
    assert weights.tolist()[:448] == [1.0] * 448 and weights[455] == 0.0
    np.testing.assert_allclose(weights[448:455], 8 / 7)  # its 7 real samples weigh padded/real
    assert pad_last_batch(np.arange(455), RunSpec(devices=2, batch_size=64, drop_remainder=True))[1] is None
    assert pad_last_batch(np.arange(454), RunSpec(devices=2, batch_size=64))[1] is None  # 6 split evenly


def test_global_batch_must_split_evenly():
    with pytest.raises(UsageError) as err:
        prepare(devices=2, batch_size=31)
    assert (
        str(err.value)
        == "batch size 31 does not split evenly across 2 devices: use a global batch size that is a multiple of 2"
    )
