"""Data-parallel training on each backend's own engine matches one-device training."""

from __future__ import annotations

import json

from helpers import run_cli


def test_compare_with_two_devices_agrees_across_backends(tmp_path):
    proc = run_cli("compare", "--devices", "2", "--epochs", "2", "--no-portability", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "agree" and report["settings"]["devices"] == 2
    # torch's two devices are two torchrun processes, which train with the custom loop
    assert (
        "; 2 devices, 1 process; jax fit, tensorflow fit, torch custom loop, " in (tmp_path / "report.md").read_text()
    )
    for name, b in report["backends"].items():
        assert b["status"] == "ok" and b["verdict"] == "agree", name
        assert len(b["step_losses"]) == 2 * -(-455 // 32)  # the last, partial batch kept, as on one device
