"""Stochastic layers are observed drawing random numbers, not guessed from what they hold."""

from __future__ import annotations

import numpy as np

from backendlab.training import prepare

F = "tests/fixtures/registered_models.py"


def test_a_recurrent_layer_with_dropout_0_is_deterministic():
    assert prepare(f"{F}:gru_no_dropout", "sequences").stochastic == []


def test_a_recurrent_layer_with_dropout_draws_and_is_named():
    assert prepare(f"{F}:lstm_with_dropout", "sequences").stochastic == ["lstm_cell"]


def test_dropout_0_is_left_out_and_detection_leaves_the_starting_state_as_it_was():
    import keras

    prep = prepare(f"{F}:batchnorm_dropouts")
    assert prep.stochastic == ["drops"]
    bn = prep.model.get_layer("bn")
    # Two training-mode passes ran to observe the layers; BatchNorm's statistics are as built.
    assert np.all(keras.ops.convert_to_numpy(bn.moving_mean) == 0.0)
    assert np.all(keras.ops.convert_to_numpy(bn.moving_variance) == 1.0)
