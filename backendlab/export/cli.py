"""``backendlab export``: write a saved model as ONNX or a TensorFlow SavedModel, and check what was written.

Runs on the backend ``KERAS_BACKEND`` names, as ``train`` does; the export is Keras's own
``model.export``. With ``--check DATA`` the written export is run in its own runtime on DATA's
test split and compared with the model's predictions: a mismatch exits 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backendlab.errors import UsageError
from backendlab.export.formats import DEFAULT_ATOL, DEFAULT_RTOL, FORMATS  # no import at all: safe before the backend
from backendlab.runspec import positive_float


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.keras", help="a model saved with `train --save` or model.save")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="where to write it (default: beside the model, MODEL.onnx or MODEL_savedmodel/)",
    )
    parser.add_argument(
        "--check",
        default=None,
        metavar="DATA",
        help="run the export on DATA's test split (a dataset name, an .npz, file.py:function) and compare "
        "with the model's own predictions; exit 1 if they differ",
    )
    parser.add_argument(
        "--atol", type=positive_float, default=DEFAULT_ATOL, help=f"absolute tolerance (default: {DEFAULT_ATOL:g})"
    )
    parser.add_argument(
        "--rtol",
        type=_tolerance,
        default=DEFAULT_RTOL,
        help=f"relative tolerance (default: {DEFAULT_RTOL:g}); agree means |export - model| <= atol + rtol*|model|",
    )


def default_out(model: Path, fmt: str) -> Path:
    return model.with_suffix(".onnx") if fmt == "onnx" else model.with_name(f"{model.stem}_savedmodel")


def load_saved_model(path: Path):
    """The model in ``path``; a backendlab file lends it the user's files it names (their custom objects)."""
    from backendlab.training.files import load_model, saved_run, users_custom_objects

    saved = saved_run(path)
    return load_model(path, users_custom_objects(saved) if saved is not None else None), saved


def check_inputs(model, data, name: str) -> None:
    """The model must take DATA's inputs: one row through it, or a UsageError naming both."""
    import numpy as np

    from backendlab.errors import one_line

    x, _ = data.take("test", np.arange(1))
    try:
        model.predict(x, verbose=0)
    except Exception as exc:
        raise UsageError(f"model {name!r} does not take the inputs of data {data.name!r}: {one_line(exc)}") from None


def export_file(args, shown=None):
    """Export the model the arguments name, and check it with ``--check``; the ExportResult.

    ``shown``: the console its status lines go to (default: stderr). Raises ExportFailed where the
    export could not be written."""
    from backendlab.backends import ensure_backend
    from backendlab.export.results import ExportResult
    from backendlab.results import check_writable

    shown = shown or _console()
    model_path = Path(args.model)
    if not model_path.is_file():
        raise UsageError(f"model file {args.model!r} does not exist")
    target = Path(args.out) if args.out else default_out(model_path, args.format)
    check_writable(target, "--out", folder=args.format == "tf_saved_model")
    backend = ensure_backend()
    from backendlab.data import load_dataset
    from backendlab.export.run import export_to, verify_export

    with shown.status(f"loading {model_path.name} on {backend.name}"):
        model, saved = load_saved_model(model_path)
        data = None
        if args.check is not None:
            data = load_dataset(args.check, saved.seed if saved else 0)
            check_inputs(model, data, str(model_path))
    with shown.status(f"exporting {args.format} on {backend.name}"):
        written = export_to(model, target, args.format)
    result = ExportResult(str(model_path), args.format, backend.name, str(written))
    if data is None:
        return result
    with shown.status(f"checking the {args.format} export on {args.check}"):
        cell = verify_export(model, data.x_test, written, args.format, atol=args.atol, rtol=args.rtol)
    result.data, result.rows, result.atol, result.rtol = data.name, _rows(data.x_test), args.atol, args.rtol
    result.status, result.max_abs, result.message = cell["status"], cell.get("max_abs"), cell.get("message", "")
    return result


def _console():
    from backendlab.cli import console

    return console


def run_export(args) -> int:
    from backendlab.cli import console, out
    from backendlab.export.run import ExportFailed

    try:
        result = export_file(args, console)
    except ExportFailed as exc:
        console.print(f"backendlab: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    if result.exit_code:
        console.print(f"backendlab: error: {result.line()}", markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(result.line(), markup=False, highlight=False, soft_wrap=True)
    return result.exit_code


def _rows(x) -> int:
    import keras

    return min(len(a) for a in keras.tree.flatten(x))
