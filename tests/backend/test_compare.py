"""backendlab compare across real worker processes (the `all` nox session has every backend)."""

from __future__ import annotations

import pytest
from helpers import report_json, run_cli

from backendlab.backends import BACKENDS


def test_backend_not_installed_is_skipped_with_the_extra_to_install(tmp_path, backend):
    missing = [b for b in BACKENDS.values() if not b.installed]
    if not missing:
        pytest.skip("every framework is installed here; the per-backend nox sessions run this test")
    # Not asked for by name: skipped, and not a failure.
    proc = run_cli("compare", "--epochs", "1", "--no-portability", "--out", str(tmp_path / "default"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = report_json(tmp_path / "default")
    assert report["backends"][backend]["status"] == "ok"
    for b in missing:
        assert report["backends"][b.name]["status"] == "skipped"
        assert (
            report["backends"][b.name]["message"]
            == f"{b.framework} is not installed: pip install -c constraints.txt -e '.[{b.extra}]'"
        )
    # Asked for by name: exit 1, saying so.
    proc = run_cli(
        "compare",
        "--backends",
        f"{backend},{missing[0].name}",
        "--epochs",
        "1",
        "--no-portability",
        "--out",
        str(tmp_path / "named"),
    )
    assert proc.returncode == 1
    assert f"{missing[0].name}: {missing[0].framework} is not installed" in proc.stdout
    assert f"{missing[0].name} was asked for by name but is not installed" in proc.stdout
