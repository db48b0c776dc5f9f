"""Training that goes NaN or inf stops at the first bad step and says which step and what went.

``train`` exits 1 with one line and saves no model; ``compare`` reports the backend as
``nonfinite`` and still writes every report file, in strict JSON.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from helpers import run_cli

from backendlab.errors import NonFiniteError
from backendlab.results import NonFinite
from backendlab.training.nonfinite import NonFiniteWatch, nonfinite_word

FAULTY = "tests/fixtures/faulty_models.py:build"
NONFINITE = "tests/fixtures/nonfinite_models.py"
TWO_INPUTS = "tests/fixtures/user_data.py:two_inputs"
NAN, INF = float("nan"), float("inf")


def _strict(text: str):
    """json.loads that refuses NaN and Infinity, as strict JSON readers (JavaScript, jq, Go) do."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# --- the watch, without a framework ----------------------------------------------------------


def test_nonfinite_word_names_the_first_bad_number():
    assert nonfinite_word(0.5) is None and nonfinite_word([1.0, 2.0]) is None
    assert nonfinite_word(NAN) == "nan" and nonfinite_word([1.0, -INF, NAN]) == "-inf"
    assert nonfinite_word("accuracy") is None  # not a number: nothing to check


def test_watch_names_the_loss_before_the_metrics_and_keeps_the_first():
    watch = NonFiniteWatch()
    assert not watch.check_logs(1, {"loss": 0.7, "accuracy": 0.5})
    assert watch.check_logs(2, {"accuracy": NAN, "loss": INF, "kind_loss": 0.3, "amount_loss": INF})
    assert watch.found == NonFinite(2, "loss", "amount_loss", "inf")
    assert watch.found.message == "training loss became inf at step 2 (in 'amount_loss')"
    assert watch.check_logs(3, {"loss": NAN}) and watch.found.step == 2  # the first stays


def test_watch_names_a_metric_when_the_loss_is_finite():
    watch = NonFiniteWatch()
    assert watch.check_logs(4, {"loss": 0.2, "kind_accuracy": 0.5, "amount_mae": NAN})
    assert watch.found.message == "training metric 'amount_mae' became nan at step 4"


# --- train on the active backend -------------------------------------------------------------


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
    result = _strict(out.read_text())
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


# --- compare, across worker processes --------------------------------------------------------


@pytest.mark.cross
@pytest.mark.parametrize("faulty", ["tensorflow", "torch"])  # torch raises where the others compute a NaN
def test_compare_reports_a_nonfinite_backend_and_writes_every_report_file(faulty, tmp_path):
    out, copy = tmp_path / "run", tmp_path / "copy.json"
    proc = run_cli(
        "compare",
        "--model",
        FAULTY,
        "--backends",
        f"jax,{faulty}",
        "--epochs",
        "1",
        "--no-portability",
        "--out",
        str(out),
        "--json",
        str(copy),
        env={"BACKENDLAB_TEST_FAULTS": f"{faulty}:nan"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    report = _strict((out / "report.json").read_text())
    assert _strict(copy.read_text()) == report
    assert report["verdict"] == "failed"
    bad = report["backends"][faulty]
    assert bad["status"] == "nonfinite" and bad["nonfinite_step"] == 1
    assert bad["nonfinite"] == {"step": 1, "quantity": "loss", "name": "loss", "value": "nan"}
    assert bad["message"] == "training loss became nan at step 1"
    assert bad["step_losses"] == [None] and bad["test"] == {}
    assert report["backends"]["jax"]["status"] == "ok"
    md = (out / "report.md").read_text()
    assert md.startswith("# backendlab compare: FAILED")
    assert f"| {faulty} | nonfinite | diverge |" in md
    assert f"- **{faulty}**: training loss became nan at step 1" in md
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / faulty / "model.keras").exists()  # a broken model is not saved
    assert f"{faulty}: training loss became nan at step 1" in proc.stdout
