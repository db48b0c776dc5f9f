"""Training that goes NaN or inf stops at the first bad step and says which step and what went.

``train`` exits 1 with one line and saves no model; ``compare`` reports the backend as
``nonfinite`` and still writes every report file, in strict JSON.
"""

from __future__ import annotations

import math
import re

import pytest
from helpers import run_cli, strict_json

from backendlab.errors import NonFiniteError
from backendlab.results import NonFinite

FAULTY = "tests/fixtures/faulty_models.py:build"

NONFINITE = "tests/fixtures/nonfinite_models.py"

TWO_INPUTS = "tests/fixtures/user_data.py:two_inputs"


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_train_stops_at_the_first_nan_loss_exits_1_and_saves_nothing(loop, backend, tmp_path):
    proc = run_cli(
        "train",
        "--model",
        FAULTY,
        "--epochs",
        "2",
        "--loop",
        loop,
        "--save",
        str(tmp_path / "model.keras"),
        env={"BACKENDLAB_TEST_FAULTS": f"{backend}:nan"},
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == "backendlab: error: training loss became nan at step 1; stopped, nothing saved"
    assert list(tmp_path.iterdir()) == []  # no model, no temporary file


def test_train_json_records_the_run_up_to_the_nonfinite_step(backend, tmp_path):
    out = tmp_path / "run.json"
    proc = run_cli("train", "--model", FAULTY, "--json", str(out), env={"BACKENDLAB_TEST_FAULTS": f"{backend}:nan"})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (
        f"backendlab: error: training loss became nan at step 1; stopped, model not saved; the run so far is in {out}"
    )
    result = strict_json(out.read_text())
    assert result["nonfinite"] == {"step": 1, "quantity": "loss", "name": "loss", "value": "nan"}
    assert result["step_losses"] == [None] and result["history"] == {} and result["test"] == {}
    assert result["saved_model"] is None


def test_run_training_raises_nonfinite_error_with_the_run_so_far(backend, tmp_path, monkeypatch):
    from backendlab.training import run_training

    monkeypatch.setenv("BACKENDLAB_TEST_FAULTS", f"{backend}:nan")
    with pytest.raises(NonFiniteError) as err:
        run_training(FAULTY, epochs=3, save=tmp_path / "m.keras")
    assert str(err.value) == "training loss became nan at step 1"
    assert err.value.result.nonfinite == NonFinite(1, "loss", "loss", "nan")
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_metric_of_one_output_going_nan_is_named(loop):
    from backendlab.training import run_training

    with pytest.raises(NonFiniteError) as err:
        run_training(f"{NONFINITE}:two_outputs_metric_nan", TWO_INPUTS, epochs=2, loop=loop)
    assert str(err.value) == "training metric 'amount_log_of_prediction' became nan at step 1"
    result = err.value.result
    assert math.isfinite(result.step_losses[0])  # the loss itself was fine


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_weights_going_nan_under_a_finite_loss_are_caught_after_the_epoch(loop):
    from backendlab.training import run_training

    with pytest.raises(NonFiniteError) as err:
        run_training(f"{NONFINITE}:weights_nan", epochs=3, loop=loop)
    assert str(err.value) == (
        "weight 'with_statistic/broken/statistic' became nan by step 15 (weights are checked after each epoch)"
    )
    result = err.value.result
    assert len(result.step_losses) == 15 and all(math.isfinite(v) for v in result.step_losses)
    assert len(result.history["loss"]) == 1  # the epoch completed; none after it ran


def test_a_regression_that_blows_up_stops_at_its_first_nonfinite_step():
    """Not written around the check: the zoo's two-output model with a learning rate far too high."""
    from backendlab.training import run_training

    with pytest.raises(NonFiniteError) as err:
        run_training("functional", TWO_INPUTS, epochs=5, learning_rate=1e3)
    found = err.value.result.nonfinite
    losses = err.value.result.step_losses
    assert found.quantity == "loss" and found.step == len(losses) and found.value in ("nan", "inf")
    assert all(math.isfinite(v) for v in losses[:-1]) and not math.isfinite(losses[-1])
    assert re.fullmatch(
        rf"training loss became {found.value} at step {found.step}( \(in '\w+_loss'\))?", str(err.value)
    )
