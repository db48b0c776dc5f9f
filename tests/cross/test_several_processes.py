"""``--processes 2``: two local processes that behave like two hosts train exactly like one process.

On the session's backend: the same per-epoch losses and final weights as one process with the same
global batch; each process reads only its own share of every global batch (it notes what it read);
a model saved under two processes continues under one like an uninterrupted run; one process that
fails (raises, or is killed mid-run) ends the run within seconds, with its error line, and leaves no
process behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import QUIET_ENV

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc")


def test_compare_under_two_processes_agrees_and_proves_the_same_batches(tmp_path):
    """Each backend in 2 processes (JAX and TensorFlow through fit, torch through its custom loop, which
    split a padded last batch differently): every step's global batch is proven the same."""
    proc = subprocess.run(
        [sys.executable, "-m", "backendlab", "compare", "--processes", "2", "--epochs", "1", "--batch-size", "64"]
        + ["--no-portability", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **QUIET_ENV},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "agree" and report["settings"]["processes"] == 2
    assert report["batches"]["identical"] is True and report["batches"]["steps"] == 8  # 455 samples, batch 64
    md = (tmp_path / "report.md").read_text()
    assert "; batch 64 (the last 7), 8 steps an epoch; " in md
    assert "; 1 device, 2 processes; jax fit, tensorflow fit, torch custom loop, " in md
