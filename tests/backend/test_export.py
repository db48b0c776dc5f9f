"""Exports a user deploys: each format written by Keras's ``model.export`` on this backend, run in its own
runtime (TensorFlow for a SavedModel, onnxruntime for ONNX), must predict what the model predicts."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli

pytest.importorskip(
    "onnxruntime", reason="the export extra is not installed: pip install -c constraints.txt -e '.[export]'"
)

from known_differences import export_failure

from backendlab.export import FORMATS, check_export, verify_export  # noqa: E402

ROWS = 7  # the second batch the export runs on; the first is one row

MODELS = ("mlp", "cnn")


CELL_FIELDS = {"status", "message", "max_abs", "max_rel", "within", "count"}


@pytest.fixture(scope="module")
def prepared():
    """The seed's MLP and the cnn zoo model, built on this backend from the seed's portable start."""
    from backendlab.training import prepare

    return {name: prepare(name) for name in MODELS}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", MODELS)
def test_export_predicts_what_the_model_predicts(prepared, backend, name, fmt, tmp_path):
    prep = prepared[name]
    x = prep.data.x_test[:ROWS]
    cell = check_export(prep.model, x, tmp_path, fmt)
    assert set(cell) == CELL_FIELDS
    json.dumps(cell, allow_nan=False)  # goes into a report as it is
    failure = export_failure(backend, name, fmt)
    if failure is not None:
        assert cell == {
            "status": "failed",
            "message": failure,
            "max_abs": None,
            "max_rel": None,
            "within": False,
            "count": 0,
        }
        return
    assert cell["status"] == "agree", cell["message"]
    assert cell["max_abs"] <= 1e-5 and cell["within"]
    units = prep.data.target.units
    assert cell["count"] == (1 + ROWS) * units  # one row and ROWS rows, every output number compared


def test_a_batch_size_fixed_at_one_is_caught(prepared, backend, tmp_path):
    import keras

    prep = prepared["mlp"]
    path = tmp_path / "one.onnx"
    spec = keras.InputSpec(shape=(1, prep.data.x_test.shape[1]), dtype="float32")
    prep.model.export(str(path), format="onnx", verbose=False, input_signature=[spec])
    cell = verify_export(prep.model, prep.data.x_test[:ROWS], path, "onnx")
    assert cell["status"] == "failed"
    assert cell["message"].startswith(f"onnx export runs on 1 row but fails on a batch of {ROWS}: ")
    assert "Got invalid dimensions for input" in cell["message"]


def test_an_export_that_predicts_differently_diverges(prepared, monkeypatch, tmp_path):
    import backendlab.export.run as export

    prep = prepared["mlp"]

    def off_by_a_thousandth(artifact, fmt):  # an export whose numbers differ from the model's by 1e-3
        return lambda flat, names: [prep.model.predict(flat[0], verbose=0) + 1e-3]

    monkeypatch.setattr(export, "load_runtime", off_by_a_thousandth)
    cell = verify_export(prep.model, prep.data.x_test[:ROWS], tmp_path / "model.onnx", "onnx")
    assert cell["status"] == "diverge" and not cell["within"]
    assert cell["max_abs"] == pytest.approx(1e-3, rel=1e-3)
    assert cell["message"] == (
        "onnx export predicts differently from the model: max abs difference 0.001, outside atol=1e-05, rtol=1e-05"
    )


def test_a_failing_export_is_a_failed_cell_not_an_exception(prepared, backend, monkeypatch, tmp_path):
    model = prepared["mlp"].model
    x = prepared["mlp"].data.x_test[:ROWS]
    assert check_export(model, x, tmp_path, "pickle")["message"] == (
        "unknown export format 'pickle': use one of tf_saved_model, onnx"
    )

    def export(*args, **kwargs):
        raise RuntimeError("converter crashed\nwith a long traceback")

    monkeypatch.setattr(model, "export", export)
    cell = check_export(model, x, tmp_path, "onnx")
    assert cell["status"] == "failed"
    assert cell["message"] == f"onnx export on {backend} failed: RuntimeError: converter crashed"


@pytest.fixture(scope="module")
def saved_mlp(prepared, tmp_path_factory):
    from backendlab.training import save_model

    prep = prepared["mlp"]
    return save_model(prep.model, tmp_path_factory.mktemp("export") / "mlp.keras", prep.config)


def test_export_command_writes_and_checks_onnx(saved_mlp, backend, capsys):
    from backendlab.cli import main

    # In this process (the next test runs the command as a user does): the converter is costly to start.
    code = main(["export", str(saved_mlp), "--format", "onnx", "--check", "breast_cancer"])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    written = saved_mlp.with_suffix(".onnx")
    assert written.is_file() and written.stat().st_size > 0
    line = " ".join(printed.out.split())
    assert f"ok: onnx export of mlp.keras ({backend}) at {str(written)!r} predicts as the model does on" in line
    assert "test rows of breast_cancer: max abs difference" in line
    assert not list(saved_mlp.parent.glob(".*tmp*"))  # the temporary export folder is gone


def test_export_command_exits_1_when_the_export_is_outside_the_tolerance(saved_mlp, backend, tmp_path):
    out = tmp_path / "strict.onnx"
    proc = run_cli(
        "export",
        str(saved_mlp),
        "--format",
        "onnx",
        "--out",
        str(out),
        "--check",
        "breast_cancer",
        "--atol",
        "1e-12",
        "--rtol",
        "0",
    )
    line = " ".join(proc.stderr.split())
    if proc.returncode == 0 and "max abs difference 0 (" in " ".join(proc.stdout.split()):
        pytest.skip("the export matches the model bit for bit on this backend: no difference to exceed a tolerance")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert f"backendlab: error: onnx export of mlp.keras ({backend}) at {str(out)!r} predicts differently" in line
    assert "is outside atol=1e-12, rtol=0" in line
    assert out.is_file()  # kept, so it can be looked at


def test_export_command_usage_errors(tmp_path):
    proc = run_cli("export", str(tmp_path / "missing.keras"), "--format", "onnx")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"backendlab: error: model file {str(tmp_path / 'missing.keras')!r} does not exist"
    proc = run_cli("export", str(tmp_path / "missing.keras"), "--format", "pickle")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("backendlab: error: argument --format: invalid choice: 'pickle'")
    assert len(proc.stderr.strip().splitlines()) == 1
