"""Exports a user deploys: each format written by Keras's ``model.export`` on this backend, run in its own
runtime (TensorFlow for a SavedModel, onnxruntime for ONNX), must predict what the model predicts."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "onnxruntime", reason="the export extra is not installed: pip install -c constraints.txt -e '.[export]'"
)

from known_differences import EXPORT_FAILURES, export_failure

from backendlab.export import FORMATS  # noqa: E402

MODELS = ("mlp", "cnn")


@pytest.mark.parametrize("name", MODELS)
def test_compare_checks_each_backends_exports_in_their_runtimes(name, pool, tmp_path):
    from backendlab.backends import BACKEND_NAMES
    from backendlab.compare import compare

    report = compare(model=name, epochs=1, exports=list(FORMATS), pool=pool, out=str(tmp_path))
    assert report.verdict == "agree"  # an export that fails does not make training diverge
    for saver in BACKEND_NAMES:
        for fmt in FORMATS:
            cell = report.portability[saver][fmt]
            failure = export_failure(saver, name, fmt)
            if failure is None:
                assert cell["status"] == "agree" and cell["max_abs"] <= 1e-5, (saver, fmt, cell)
            else:
                assert (cell["status"], cell["message"]) == ("failed", failure), (saver, fmt)
    failing = [key for key in EXPORT_FAILURES if key[1] == name]
    assert report.export_verdict == ("failed" if failing else "agree")
    md = (tmp_path / "report.md").read_text()
    assert "| saved on \\ loaded on | jax | tensorflow | torch | numpy | onnx | tf_saved_model |" in md
