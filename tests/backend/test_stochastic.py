"""Stochastic layers are observed drawing random numbers, not guessed from what they hold."""

from __future__ import annotations

import numpy as np

from backendlab.training import prepare

F = "tests/fixtures/registered_models.py"


def test_a_recurrent_layer_with_dropout_0_is_deterministic():
    assert prepare(f"{F}:gru_no_dropout", "sequences").stochastic == []


def test_a_recurrent_layer_with_dropout_draws_and_is_named():
    import keras

    prep = prepare(f"{F}:lstm_with_dropout", "sequences")
    lstm = next(layer for layer in prep.model.layers if isinstance(layer, keras.layers.LSTM))
    assert prep.stochastic == [lstm.name]  # as model.summary() names it, not its cell (lstm_cell)
    assert prep.outside == []  # it draws through Keras: portably


def test_a_layer_drawing_from_its_frameworks_generator_is_found_under_portable_randomness():
    prep = prepare("tests/fixtures/outside_random_models.py:own_noise")
    assert prep.stochastic == ["drop", "own_noise"] and prep.outside == ["own_noise"]
    # Under --random backend nothing is looked for beyond the layers holding a SeedGenerator, as before.
    prep = prepare("tests/fixtures/outside_random_models.py:own_noise", random="backend")
    assert prep.stochastic == ["drop"] and prep.outside == []


def test_a_layer_drawing_a_beta_that_stays_on_the_backends_generator_is_named_outside():
    """MixUp's mix weight is a beta draw, which portable randomness leaves on each backend's generator."""
    prep = prepare("tests/fixtures/outside_random_models.py:mix_up", "images", batch_size=8)
    assert prep.stochastic == ["mix_up", "drop"] and prep.outside == ["mix_up"]


def test_dropout_0_is_left_out_and_detection_leaves_the_starting_state_as_it_was():
    import keras

    prep = prepare(f"{F}:batchnorm_dropouts")
    assert prep.stochastic == ["drops"] and prep.outside == []
    bn = prep.model.get_layer("bn")
    # Training-mode passes ran to observe the layers; BatchNorm's statistics are as built.
    assert np.all(keras.ops.convert_to_numpy(bn.moving_mean) == 0.0)
    assert np.all(keras.ops.convert_to_numpy(bn.moving_variance) == 1.0)
