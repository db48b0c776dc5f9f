"""No framework's log lines in what a command prints: TensorFlow's C++ start-up lines (``oneDNN custom
operations are on``, ``All log messages before absl::InitializeLog()``) and gloo's ``[Gloo] Rank ... is
connected`` stay off the terminal in the command line, its ranks and a user's own script.

Run as a user runs them, without the tests' ``TF_CPP_MIN_LOG_LEVEL``, at the smallest sizes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from helpers import pipeline

#: A line a framework's C++ logging printed: ``I0000 00:00:... port.cc:153] ...``, absl's warning, gloo's.
NATIVE_LOG_LINE = re.compile(r"^\S+\.cc:\d+\]|\.cc:\d+\] |oneDNN|absl::InitializeLog|^\[Gloo\]", re.MULTILINE)


def _run_as_a_user(*args: str, backend: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env={**env, "KERAS_BACKEND": backend}
    )


def test_train_on_tensorflow_prints_no_native_log_line():
    done = _run_as_a_user("-m", "backendlab", "train", "--epochs", "1", "--batch-size", "128", backend="tensorflow")
    assert done.returncode == 0, done.stderr
    assert "mlp on breast_cancer, backend" in done.stdout
    assert NATIVE_LOG_LINE.findall(done.stdout + done.stderr) == []


def test_train_in_two_jax_processes_prints_no_native_log_line():
    # The ranks once imported TensorFlow (Keras seeds it in keras.distribution.initialize) and gloo said
    # on stdout that each had joined.
    args = ("-m", "backendlab", "train", "--processes", "2", "--epochs", "1", "--batch-size", "128")
    done = _run_as_a_user(*args, backend="jax")
    assert done.returncode == 0, done.stderr
    assert NATIVE_LOG_LINE.findall(done.stdout + done.stderr) == []


def test_a_pipeline_error_is_one_line_with_no_native_log_line_before_it():
    done = _run_as_a_user(
        "-m", "backendlab", "train", "--data", pipeline("tfdata"), "--batch-size", "16", backend="jax"
    )
    assert done.returncode == 2
    assert done.stderr.startswith("backendlab: error: --batch-size 16 does not apply: ")
    assert done.stderr.count("\n") == 1


def test_a_users_script_that_imports_backendlab_first_prints_no_native_log_line():
    done = _run_as_a_user(
        "-c", "import backendlab\nimport tensorflow as tf\nprint(tf.constant(2) + 1)", backend="torch"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
