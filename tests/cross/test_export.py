"""Exports a user deploys: each format written by Keras's ``model.export`` on this backend, run in its own
runtime (TensorFlow for a SavedModel, onnxruntime for ONNX), must predict what the model predicts."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "onnxruntime", reason="the export extra is not installed: pip install -c constraints.txt -e '.[export]'"
)

from known_differences import export_failure, export_route

from backendlab.export import FORMATS  # noqa: E402

MODELS = ("mlp", "cnn")


@pytest.mark.parametrize("name", MODELS)
def test_compare_checks_each_backends_exports_in_their_runtimes(name, pool, tmp_path):
    """Each trained model in each format, exported on its own backend where that works, else from its .keras
    file on another (a torch model as a SavedModel through TensorFlow), against its trainer's predictions."""
    from backendlab.backends import BACKEND_NAMES
    from backendlab.compare import compare

    report = compare(model=name, epochs=1, exports=list(FORMATS), pool=pool, out=str(tmp_path))
    assert report.verdict == "agree"
    routed = []
    for saver in BACKEND_NAMES:
        for fmt in FORMATS:
            cell = report.portability[saver][fmt]
            route = export_route(saver, name, fmt)
            assert route is not None, f"no backend here exports {name} as {fmt}"
            assert cell["status"] == "agree" and cell["max_abs"] <= 1e-5, (saver, fmt, cell)
            if route != saver:
                assert (cell["route"], cell["own_failure"]) == (route, export_failure(saver, name, fmt))
                assert cell["message"].endswith(f"predicts as {saver}'s trained model does "
                                                f"(max abs difference {cell['max_abs']:.3g})")  # fmt: skip
                routed.append(f"{saver} as {fmt}: agree ({cell['max_abs']:.2e}) via {route}")
            else:
                assert "route" not in cell, (saver, fmt)
    assert (report.export_verdict, report.exit_code) == ("agree", 0)
    md = (tmp_path / "report.md").read_text()
    assert "| saved on \\ loaded on | jax | tensorflow | torch | numpy | onnx | tf_saved_model |" in md
    exports = next(line for line in md.splitlines() if line.startswith("Exports: "))
    assert exports.startswith("Exports: AGREE") and all(r in exports for r in routed), exports
