"""Training that goes NaN or inf stops at the first bad step and says which step and what went.

``train`` exits 1 with one line and saves no model; ``compare`` reports the backend as
``nonfinite`` and still writes every report file, in strict JSON.
"""

from __future__ import annotations

import pytest
from helpers import run_cli, strict_json

FAULTY = "tests/fixtures/faulty_models.py:build"


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
    report = strict_json((out / "report.json").read_text())
    assert strict_json(copy.read_text()) == report
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
