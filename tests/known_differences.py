"""What a backend does differently, kept as data: the tests read their expectations from here instead of
writing ``if backend == ...`` lines (array-api-compat keeps its known failures the same way).

Each entry says what happens and why, as measured here; a test that finds it no longer happens fails,
so the table cannot go stale unnoticed.
"""

from __future__ import annotations

import importlib.util

ORT_MAXPOOL = (
    "onnx export fails on a batch of 1 row: InvalidArgument: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : "
    "Non-zero status code returned while running MaxPool node. Name:'node_MaxPool_9' "
    "Status Message: Unsupported pooling size."
)
NO_TORCH_XLA = "tf_saved_model export on torch needs torch_xla installed: pip install torch_xla"

#: (backend, model, format) -> the one line check_export gives, as measured (README: "Export").
#: jax2onnx writes MaxPooling2D as a MaxPool over 4 window dimensions (1, 2, 2, 1), which onnxruntime refuses.
#: Keras exports torch models to SavedModel through torch_xla, whose last release (2.9.0) needs torch 2.9.
EXPORT_FAILURES = {
    ("jax", "cnn", "onnx"): ORT_MAXPOOL,
    ("torch", "mlp", "tf_saved_model"): NO_TORCH_XLA,
    ("torch", "cnn", "tf_saved_model"): NO_TORCH_XLA,
}

#: Backends whose tune test tries eager steps only: torch.compile takes tens of seconds per model here.
TUNE_EAGER_ONLY = {"torch"}


def export_failure(backend: str, name: str, fmt: str) -> str | None:
    """The one line exporting zoo model ``name`` from ``backend`` to ``fmt`` is known to fail with, or None."""
    from backendlab.export import missing_packages

    missing = missing_packages(fmt, backend)
    if missing:
        return f"{fmt} export on {backend} needs {' and '.join(missing)} installed: pip install {' '.join(missing)}"
    return EXPORT_FAILURES.get((backend, name, fmt))


def keras_loads_torch_optimizers() -> bool:
    """Whether Keras alone can load a .keras file compiled on torch: it records the optimizer under torch's own
    module (``keras.src.backend.torch.optimizers.torch_sgd``), which imports only where torch is installed."""
    return importlib.util.find_spec("torch") is not None
