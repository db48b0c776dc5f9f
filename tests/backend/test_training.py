"""The seed's workflow and the model zoo on the active backend."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SMALL_ZOO

from backendlab.training import batch_slices, epoch_orders, run_training

M = "tests/fixtures/user_models.py"


def test_seed_example_reaches_94_percent_test_accuracy(seed_result, backend):
    assert seed_result.backend == backend
    assert seed_result.config.model == "mlp" and seed_result.config.data == "breast_cancer"
    assert seed_result.config.optimizer == "sgd" and seed_result.config.learning_rate == pytest.approx(0.01)
    # From the portable start (the same on every backend) it scores 108 of 114 everywhere: 0.947.
    assert seed_result.test["accuracy"] >= 0.94


def test_seed_result_holds_history_steps_and_timing(seed_result):
    epochs = seed_result.config.epochs
    assert len(seed_result.history["loss"]) == epochs
    assert len(seed_result.history["accuracy"]) == epochs
    steps = epochs * len(batch_slices(455, 32))
    assert len(seed_result.step_losses) == steps
    # the epoch's loss is the batch-size-weighted mean of its batches' losses
    first_epoch = np.array(seed_result.step_losses[:15])
    sizes = np.array([32] * 14 + [455 - 14 * 32])
    assert np.sum(first_epoch * sizes) / 455 == pytest.approx(seed_result.history["loss"][0], rel=1e-4)
    assert 0 < seed_result.train_time_s < 600
    assert seed_result.num_params == 30 * 32 + 32 + 32 * 16 + 16 + 16 + 1


def test_batch_order_is_seeded_numpy_not_the_backend():
    a, b = epoch_orders(100, 3, seed=7), epoch_orders(100, 3, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], epoch_orders(100, 1, seed=8)[0])


@pytest.mark.parametrize("model", SMALL_ZOO)
def test_every_zoo_model_trains_with_falling_loss(model):
    result = run_training(model, epochs=3, optimizer="adam", learning_rate=0.005)
    losses = result.history["loss"]
    assert losses[-1] < losses[0], losses
    assert np.isfinite(result.step_losses).all()
    assert result.test  # evaluate ran


def test_a_model_compiled_with_its_own_loss_is_not_held_to_the_datas_output_width():
    # breast_cancer is binary, so backendlab's own loss would want one unit; this model brings its own.
    result = run_training("tests/fixtures/user_models.py:softmax_two_compiled", epochs=2)
    assert np.isfinite(result.step_losses).all() and result.history["loss"][-1] < result.history["loss"][0]


def test_two_softmax_units_learn_binary_labels_as_class_ids():
    # Dense(2, softmax) on 0/1 labels was refused ("its last dimension must be 1") unless compiled by hand.
    from backendlab.data import load_dataset
    from backendlab.models import build_model, check_compatible

    data = load_dataset("breast_cancer")
    learned = check_compatible(build_model(f"{M}:softmax_two", data), data, f"{M}:softmax_two")
    assert learned.loss() == "sparse_categorical_crossentropy"
    result = run_training(f"{M}:softmax_two", epochs=5)
    assert result.test["accuracy"] > 0.85, result.test


def test_compiled_user_model_keeps_its_own_loss_optimizer_and_metrics():
    result = run_training("tests/fixtures/user_models.py:compiled_adam", epochs=2)
    assert result.config.optimizer == "adam"
    assert result.config.learning_rate == pytest.approx(0.005)
    assert set(result.test) == {"loss", "accuracy", "auc"}


def test_a_model_compiled_with_steps_per_execution_trains_each_step_as_compiled_with_one():
    # It failed on every backend: IndexError on JAX and TensorFlow, Keras's refusal on PyTorch.
    four = run_training(f"{M}:compiled_four_steps_per_call", epochs=2)
    one = run_training(f"{M}:compiled_adam", epochs=2)
    assert len(four.step_losses) == len(one.step_losses) == 2 * 15
    np.testing.assert_allclose(four.step_losses, one.step_losses, rtol=1e-6)
    assert four.test == pytest.approx(one.test, rel=1e-5)


def test_each_outputs_test_loss_is_its_mean_over_the_test_samples():
    # TensorFlow weighed each test batch alike in a_loss and b_loss, its last batch of 4 as much as one of 32,
    # while the total loss counted samples: the total was then not a_loss + 0.5 * b_loss.
    test = run_training(f"{M}:two_heads", "tests/fixtures/user_data.py:two_labels", epochs=2).test
    assert test["loss"] == pytest.approx(test["a_loss"] + 0.5 * test["b_loss"], rel=1e-5), test


def test_subclassed_user_model_trains():
    result = run_training("tests/fixtures/user_models.py:subclassed", epochs=3)
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_user_data_function_with_dict_inputs_and_outputs_trains_the_functional_model():
    result = run_training("functional", "tests/fixtures/user_data.py:two_inputs", epochs=3, optimizer="adam")
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert {"kind_accuracy", "amount_mae"} <= set(result.test)


def test_save_writes_a_keras_file_that_predicts_like_the_model(tmp_path):
    import keras

    from backendlab.data import load_dataset

    path = tmp_path / "seed.keras"
    result = run_training(epochs=2, save=path)
    assert result.saved_model == str(path) and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.keras"]  # no temporary file left
    model = keras.saving.load_model(path)
    data = load_dataset("breast_cancer")
    assert model.evaluate(data.x_test, data.y_test, verbose=0, return_dict=True)["loss"] == pytest.approx(
        result.test["loss"], rel=1e-5
    )
