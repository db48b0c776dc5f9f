"""The export formats, what each needs on each backend, and how close an export must predict to its model.

Only the standard library: compare's orchestrator reads this, and it imports no framework.
"""

from __future__ import annotations

import importlib.util

#: The formats of Keras's ``model.export`` that backendlab checks, and how close an export must predict
#: (Keras's own ONNX tests compare with onnxruntime at 1e-6, 1e-5 for LSTM).
FORMATS = ("tf_saved_model", "onnx")
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5

#: What each format needs besides the active backend's framework: (import name, pip name, backendlab's
#: extra that installs it, or None). Keras's ONNX export goes through a different converter on each
#: backend (keras/src/export/onnx.py); on torch its SavedModel export goes through torch_xla's StableHLO
#: bridge (keras/src/backend/torch/export.py), in none of backendlab's extras: its last release (2.9.0)
#: is built for torch 2.9 and does not import beside the torch that backendlab's constraints pin.
NEEDS: dict[str, dict[str | None, tuple[tuple[str, str, str | None], ...]]] = {
    "tf_saved_model": {
        None: (("tensorflow", "tensorflow-cpu", "tensorflow"),),
        "torch": (("torch_xla", "torch_xla", None),),
    },
    "onnx": {
        None: (("onnx", "onnx", "export-{backend}"), ("onnxruntime", "onnxruntime", "export-{backend}")),
        "tensorflow": (("tf2onnx", "tf2onnx", "export-tensorflow"),),
        "jax": (("jax2onnx", "jax2onnx", "export-jax"),),
        "torch": (("onnxscript", "onnxscript", "export-torch"),),
    },
}

#: The backends that can export each format, in the order compare tries them for a model whose own
#: backend could not export it: the model's ``.keras`` file is loaded there and exported. A SavedModel is
#: TensorFlow's own; for ONNX, tf2onnx has converted the most models here (jax2onnx writes MaxPooling2D
#: as a pooling window onnxruntime refuses; torch's exporter needs the model traced).
ROUTES = {"tf_saved_model": ("tensorflow", "jax", "torch"), "onnx": ("tensorflow", "torch", "jax")}


def _needs(fmt: str, backend: str) -> list[tuple[str, str, str | None]]:
    wanted = (*NEEDS[fmt].get(None, ()), *NEEDS[fmt].get(backend, ()))
    return [(module, pip, extra and extra.format(backend=backend)) for module, pip, extra in wanted]


def missing_packages(fmt: str, backend: str) -> list[str]:
    """The pip names of what ``fmt`` needs on ``backend`` and is not installed."""
    return [pip for module, pip, _ in _needs(fmt, backend) if importlib.util.find_spec(module) is None]


def missing_message(fmt: str, backend: str) -> str | None:
    """What ``fmt``'s export on ``backend`` needs and how to get it, in one line; None when nothing is missing."""
    missing = [(pip, extra) for module, pip, extra in _needs(fmt, backend) if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    names = " and ".join(pip for pip, _ in missing)
    if all(extra for _, extra in missing):
        extras = ",".join(dict.fromkeys(extra for _, extra in missing))
        return f"{fmt} export on {backend} needs {names} installed: pip install -c constraints.txt -e '.[{extras}]'"
    others = [b for b in ROUTES[fmt] if b != backend]
    return (
        f"{fmt} export on {backend} needs {names}, which backendlab's extras do not install: "
        f"export the saved .keras file on {' or '.join(others)} instead (compare does so itself)"
    )


def failed_cell(message: str) -> dict:
    """The cell of an export that failed, shaped as every export cell is (the Diff's numbers empty)."""
    return {"status": "failed", "message": message, "max_abs": None, "max_rel": None, "within": False, "count": 0}
