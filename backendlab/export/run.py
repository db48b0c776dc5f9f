"""Export a model with Keras's own ``model.export`` and check the export predicts what the model predicts.

Runs inside a process whose backend is chosen (``KERAS_BACKEND``); the frameworks and the
runtimes are imported inside the functions, at the last moment.

Each format is run in its own runtime, as a user serving it would: a SavedModel through
TensorFlow's ``tf.saved_model.load`` and its ``serve`` endpoint, an ONNX file through
``onnxruntime``. Each is run on one row and on several rows, so an export whose batch size
was fixed at 1 is caught. The verdict is a cell shaped like compare's portability cells:
``status`` (agree, diverge, failed), ``message`` and the :class:`~backendlab.compare.diff.Diff` numbers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backendlab.compare.diff import Diff, combine
from backendlab.errors import one_line
from backendlab.export.formats import DEFAULT_ATOL, DEFAULT_RTOL, FORMATS, failed_cell, missing_message

#: How a format's export is named inside its folder: a file for ONNX, a folder for a SavedModel.
ARTIFACT = {"tf_saved_model": "savedmodel", "onnx": "model.onnx"}


@dataclass(frozen=True)
class Expected:
    """What an export must predict on all the rows of its input, and whose predictions those are."""

    predictions: Any  # an array, or the model's structure of them
    of: str  # "torch's trained model"


class ExportFailed(Exception):
    """One line that says which step of an export check failed and why."""


def check_exports(
    model, x, workdir: str | os.PathLike, formats: Sequence[str] = FORMATS, atol: float = DEFAULT_ATOL, **kwargs
) -> dict[str, dict]:
    """Each format's cell (:func:`check_export`), each exported into its own folder under ``workdir``."""
    return {fmt: check_export(model, x, Path(workdir) / fmt, fmt, atol=atol, **kwargs) for fmt in formats}


def check_export(
    model,
    x,
    workdir: str | os.PathLike,
    fmt: str,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    expected: Expected | None = None,
) -> dict:
    """Export ``model`` as ``fmt`` into ``workdir``, run it in its runtime, compare with ``model.predict``.

    ``x`` is the model's input (an array, or a list or dict of arrays for several inputs); the export
    is run on its first row and on all its rows. ``expected``: compare with these predictions on ``x``
    instead (another backend's, that trained the model). Never raises: a failure is a cell with status
    ``failed`` and one line in ``message``.
    """
    try:
        artifact = export_model(model, workdir, fmt)
    except Exception as exc:  # a converter can fail anywhere; the check reports it, it does not crash
        return failed_cell(str(exc) if isinstance(exc, ExportFailed) else f"{fmt} export: {one_line(exc)}")
    return verify_export(model, x, artifact, fmt, atol=atol, rtol=rtol, expected=expected)


def verify_export(
    model,
    x,
    artifact: str | os.PathLike,
    fmt: str,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    expected: Expected | None = None,
) -> dict:
    """The cell of an export already written at ``artifact``: run in its runtime against ``model.predict``
    (or ``expected``, as :func:`check_export`)."""
    try:
        return _compare(model, x, fmt, load_runtime(Path(artifact), fmt), atol, rtol, expected)
    except ExportFailed as exc:
        return failed_cell(str(exc))
    except Exception as exc:  # the runtime can refuse the file in its own words
        return failed_cell(f"{fmt} export cannot be run: {one_line(exc)}")


def export_model(model, workdir: str | os.PathLike, fmt: str) -> Path:
    """``model.export`` into ``workdir``; returns the artifact's path (:data:`ARTIFACT`)."""
    import keras

    if fmt not in FORMATS:
        raise ExportFailed(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    backend = keras.backend.backend()
    missing = missing_message(fmt, backend)
    if missing:
        raise ExportFailed(missing)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    artifact = workdir / ARTIFACT[fmt]
    if artifact.is_dir():
        shutil.rmtree(artifact)
    try:
        _ensure_called(model)
        _quietly(lambda: model.export(str(artifact), format=fmt, verbose=False))
    except Exception as exc:
        raise ExportFailed(f"{fmt} export on {backend} failed: {one_line(exc)}") from exc
    if not artifact.exists():
        raise ExportFailed(f"{fmt} export on {backend} wrote nothing at {str(artifact)!r}")
    return artifact


def _ensure_called(model) -> None:
    """Call a model that was never called directly once, on zeros shaped like its inputs.

    Keras's ONNX export refuses a model it has not seen called ("The model provided has never
    called"), and a model loaded from a ``.keras`` file on JAX has not been, even after ``predict``
    (which runs a stateless call there).
    """
    if getattr(model, "_called", True):
        return
    import keras

    structure = getattr(model, "_inputs_struct", None) or getattr(model, "inputs", None)
    if structure is None:
        return  # a subclassed model never called: Keras's own error says so

    def zeros(t):
        return np.zeros((1, *(d or 1 for d in t.shape[1:])), dtype=t.dtype)

    if isinstance(structure, (list, tuple)) and len(structure) == 1:
        structure = structure[0]  # one input, passed as itself
    _quietly(lambda: model(keras.tree.map_structure(zeros, structure), training=False))


def _quietly(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with the converters' own chatter (prints, warnings) kept off the terminal."""
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn()


# --- running an export in its own runtime ---------------------------------------------

Runtime = Callable[[list[np.ndarray], list[str]], list[np.ndarray]]


def load_runtime(artifact: Path, fmt: str) -> Runtime:
    """A function from the model's flat inputs (and their names) to the export's flat outputs."""
    runtimes = {"tf_saved_model": _saved_model_runtime, "onnx": _onnx_runtime}
    if fmt not in runtimes:
        raise ExportFailed(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    return runtimes[fmt](artifact)


def _saved_model_runtime(artifact: Path) -> Runtime:
    # Under the torch backend torch is already imported here, so importing TensorFlow now is safe
    # (the other order can crash the process).
    import tensorflow as tf

    loaded = tf.saved_model.load(str(artifact))
    serve = loaded.serve  # the endpoint Keras's export writes
    # Its positional arguments: the model's input as one tensor, a list or a dict of them.
    structure = serve.concrete_functions[0].structured_input_signature[0]

    def run(flat: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
        args = tf.nest.pack_sequence_as(structure, [tf.constant(a) for a in flat])
        return [np.asarray(y) for y in tf.nest.flatten(serve(*args))]

    run.loaded = loaded  # the endpoint's variables live as long as the object that loaded them

    return run


def _onnx_runtime(artifact: Path) -> Runtime:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]

    def run(flat: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
        if len(flat) != len(wanted):
            raise ExportFailed(f"onnx export takes {len(wanted)} inputs {wanted}, the model {len(flat)} {names}")
        # By name where the export kept the model's input names, else in the model's order.
        by_name = dict(zip(names, flat))
        feeds = {w: by_name[w] for w in wanted} if set(wanted) == set(by_name) else dict(zip(wanted, flat))
        return [np.asarray(y) for y in session.run(None, feeds)]

    return run


# --- comparing ------------------------------------------------------------------------


def _flat_inputs(model, x) -> tuple[list[np.ndarray], list[str]]:
    """The model's inputs as a flat list, in Keras's order, with the name of each."""
    import keras

    flat = [np.asarray(a) for a in keras.tree.flatten(x)]
    if isinstance(x, dict):
        names = sorted(x)  # keras.tree flattens a dict by sorted keys
    else:
        names = [getattr(t, "name", f"input_{i}") for i, t in enumerate(getattr(model, "inputs", None) or flat)]
        names = names if len(names) == len(flat) else [f"input_{i}" for i in range(len(flat))]
    return flat, names


def _rows(x, n: int):
    import keras

    return keras.tree.map_structure(lambda a: np.asarray(a)[:n], x)


def _num_rows(x) -> int:
    import keras

    return min(len(a) for a in keras.tree.flatten(x))


def _compare(model, x, fmt: str, runtime: Runtime, atol: float, rtol: float, expected: Expected | None) -> dict:
    import keras

    total = _num_rows(x)
    if total == 0:
        raise ExportFailed(f"{fmt}: no rows to check the export on")
    diffs: list[Diff] = []
    for n in dict.fromkeys((1, total)):  # one row, then all: a batch size baked to 1 fails the second
        rows = _rows(x, n)
        wanted = model.predict(rows, verbose=0) if expected is None else _rows(expected.predictions, n)
        wanted = [np.asarray(y) for y in keras.tree.flatten(wanted)]
        flat, names = _flat_inputs(model, rows)
        try:
            got = runtime(flat, names)
        except ExportFailed:
            raise
        except Exception as exc:
            where = f"runs on 1 row but fails on a batch of {n}" if n > 1 else "fails on a batch of 1 row"
            raise ExportFailed(f"{fmt} export {where}: {one_line(exc)}") from exc
        if len(got) != len(wanted):
            raise ExportFailed(f"{fmt} export returns {len(got)} output(s), the model {len(wanted)}")
        for i, (a, ref) in enumerate(zip(got, wanted)):
            if a.shape != ref.shape:
                what = "output" if len(got) == 1 else f"output {i}"
                raise ExportFailed(
                    f"{fmt} export's {what} has shape {a.shape} on a batch of {n} row(s), the model's {ref.shape}"
                    + (": its batch size is fixed" if a.shape[:1] != ref.shape[:1] else "")
                )
            diffs.append(Diff.of(a, ref, rtol, atol))
    diff = combine(diffs)
    of = "the model" if expected is None else expected.of
    if diff.within:
        message = f"{fmt} export predicts as {of} does (max abs difference {diff.max_abs:.3g})"
    else:
        message = (
            f"{fmt} export predicts differently from {of}: max abs difference {diff.max_abs:.3g}, "
            f"outside atol={atol:g}, rtol={rtol:g}"
        )
    return {"status": "agree" if diff.within else "diverge", "message": message, **asdict(diff)}


def export_to(model, out: str | os.PathLike, fmt: str) -> Path:
    """Export ``model`` as ``fmt`` to ``out`` atomically: into a temporary folder beside it, then renamed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        artifact = export_model(model, tmp, fmt)
        if out.is_dir() and fmt == "tf_saved_model":
            old = out.with_name(f".{out.name}.{os.getpid()}.old")
            os.replace(out, old)
            os.replace(artifact, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(artifact, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
