"""A .keras file saved by backendlab carries its run: `train --resume FILE` continues it, on any backend."""

from __future__ import annotations

import json

from helpers import run_cli

from backendlab.backends import BACKEND_NAMES


def _train(*args, backend=None):
    done = run_cli("train", *args, env={"KERAS_BACKEND": backend} if backend else None)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_resume_takes_model_data_and_settings_from_the_file(tmp_path):
    saved, resumed = tmp_path / "rnn.keras", tmp_path / "resumed.json"
    _train("--model", "rnn", "--optimizer", "adam", "--batch-size", "64", "--epochs", "1", "--save", str(saved))
    _train("--resume", str(saved), "--json", str(resumed))
    config = json.loads(resumed.read_text())["config"]
    settings = (config["model"], config["data"], config["batch_size"], config["optimizer"])
    assert settings == ("rnn", "sequences", 64, "adam")
    assert config["initial_epoch"] == 1 and config["epochs"] == 1  # the saved run's epochs, once more


def test_a_flag_given_on_resume_overrides_and_a_data_that_does_not_fit_is_one_line(tmp_path):
    saved, resumed = tmp_path / "cnn.keras", tmp_path / "resumed.json"
    _train("--model", "cnn", "--epochs", "1", "--save", str(saved))
    _train("--resume", str(saved), "--epochs", "2", "--json", str(resumed))
    config = json.loads(resumed.read_text())["config"]
    assert (config["data"], config["epochs"], config["initial_epoch"]) == ("digits", 2, 1)
    done = run_cli("train", "--resume", str(saved), "--data", "breast_cancer")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "backendlab: error: model 'cnn' does not accept the inputs of data 'breast_cancer' (one input of shape (30,)): "
    )
    assert "expected shape=(None, 8, 8, 1), found shape=(2, 30)" in lines[0]


def test_a_cnn_saved_on_one_backend_resumes_on_another_from_the_file_alone(tmp_path):
    first, last = BACKEND_NAMES[0], BACKEND_NAMES[-1]
    saved, before, resumed = tmp_path / "cnn.keras", tmp_path / "before.json", tmp_path / "resumed.json"
    _train("--model", "cnn", "--optimizer", "adam", "--epochs", "2", "--save", str(saved), "--json", str(before),
           backend=first)  # fmt: skip
    _train("--resume", str(saved), "--epochs", "1", "--json", str(resumed), backend=last)
    result = json.loads(resumed.read_text())
    assert result["backend"] == last
    config = result["config"]
    assert (config["model"], config["data"], config["initial_epoch"]) == ("cnn", "digits", 2)
    assert (config["optimizer"], config["batch_size"]) == ("adam", 32)
    # It went on from the saved weights and optimizer state, not from a fresh start.
    assert result["history"]["loss"][0] < json.loads(before.read_text())["history"]["loss"][-1]
