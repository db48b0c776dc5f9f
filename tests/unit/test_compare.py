"""backendlab compare across real worker processes (the `all` nox session has every backend)."""

from __future__ import annotations

from helpers import run_cli


def test_compare_unknown_backend_exits_2(tmp_path):
    proc = run_cli("compare", "--backends", "jax,theano", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "backendlab: error: unknown backend 'theano' in --backends: valid backends are jax, tensorflow, torch"
    )
