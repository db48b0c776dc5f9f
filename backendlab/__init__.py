"""backendlab: train one Keras 3 model on TensorFlow, JAX and PyTorch; prove it trains the same; measure how fast.

One function per command, its keyword arguments the command's flags (``docs/api.md``)::

    import backendlab
    report = backendlab.compare(model="cnn", epochs=1)   # backendlab compare --model cnn --epochs 1
    report.verdict                                       # "agree"; in Jupyter the report draws its table

Importing backendlab imports no framework; the names below import what they need when first used.
``compare``, ``bench``, ``tune`` and ``check_layer`` train in worker processes and never import a
framework here; ``train`` and ``export`` run here, on the backend ``KERAS_BACKEND`` names.

Imported before TensorFlow, backendlab keeps
TensorFlow's C++ start-up lines off stderr (:mod:`backendlab.native_logs`), in the command line,
its workers and a user's own script alike.
"""

from __future__ import annotations

__version__ = "0.1.0"

from backendlab import lazy  # noqa: E402
from backendlab.backends import BACKEND_NAMES, BACKENDS, ensure_backend, installed_backends  # noqa: E402, F401
from backendlab.errors import BackendlabError, UsageError  # noqa: E402
from backendlab.native_logs import drop_startup_chatter  # noqa: E402

drop_startup_chatter()

# Lazy: imported when first asked for. compare, bench, tune and export are their packages, which are
# callable (backendlab.lazy.CommandPackage): importing one of their modules cannot hide the function.
_LAZY = {
    "compare": "backendlab.compare",
    "train": "backendlab.api",
    "bench": "backendlab.bench",
    "tune": "backendlab.tune",
    "export": "backendlab.export",
    "check_layer": "backendlab.api",
    "testing": "backendlab.testing",
    "shared_pool": "backendlab.workers.runner",
    "CompareReport": "backendlab.compare.results",
    "TrainResult": "backendlab.results",
    "BenchReport": "backendlab.bench.results",
    "TuneReport": "backendlab.tune.results",
    "ExportResult": "backendlab.export.results",
    "ParityReport": "backendlab.layers.check",
    "TrainStep": "backendlab.training",
}
# Kept for code written before the functions above; not part of the API the docs list.
_EARLIER = {
    "backend_info": "backendlab.training",
    "run_training": "backendlab.training",
    "prepare": "backendlab.training",
    "whole_step_fit": "backendlab.training",
    "load_dataset": "backendlab.data",
    "build_model": "backendlab.models",
    "MODELS": "backendlab.models",
    "DATASETS": "backendlab.data",
    "portable_init": "backendlab.init",
    "set_random_seed": "backendlab.training.keras_fixes",
}

__all__ = [*_LAZY, "installed_backends", "BackendlabError", "UsageError"]


__getattr__ = lazy.exports(__name__, {**_LAZY, **_EARLIER})
