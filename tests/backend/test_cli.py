"""The command line, as a user runs it."""

from __future__ import annotations

import json
import re

from helpers import run_cli


def test_train_runs_the_seed_example_and_writes_json(tmp_path, backend):
    out = tmp_path / "result.json"
    proc = run_cli("train", "--epochs", "3", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["backend"] == backend
    assert result["config"]["model"] == "mlp" and result["config"]["data"] == "breast_cancer"
    assert len(result["history"]["loss"]) == 3
    assert 0.5 < result["test"]["accuracy"] <= 1.0
    # The summary: loss first on every backend, and the line under it whole, not folded to the table's width.
    header = next(line for line in proc.stdout.splitlines() if "epoch" in line and "loss" in line)
    assert header.index("loss") < header.index("accuracy")
    assert re.search(r"^test: loss=\d+\.\d{4}, accuracy=\d\.\d{4}; training took .*\(portable\)$", proc.stdout, re.M)


def test_train_custom_loop_save_and_resume(tmp_path):
    first, resumed = tmp_path / "first.keras", tmp_path / "resumed.json"
    proc = run_cli("train", "--loop", "custom", "--epochs", "2", "--save", str(first))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", "--loop", "custom", "--resume", str(first), "--epochs", "1", "--json", str(resumed))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(resumed.read_text())
    assert result["config"]["initial_epoch"] == 2 and result["config"]["loop"] == "custom"
