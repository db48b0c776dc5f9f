"""backendlab: train one Keras 3 model on TensorFlow, JAX and PyTorch; prove it trains the same; measure how fast.

Importing backendlab imports no framework; the functions below import Keras (and so
the backend ``KERAS_BACKEND`` names) when first called. Imported before TensorFlow, it keeps
TensorFlow's C++ start-up lines off stderr (:mod:`backendlab.native_logs`), in the command line,
its workers and a user's own script alike.
"""

from __future__ import annotations

__version__ = "0.1.0"

from backendlab import lazy  # noqa: E402
from backendlab.backends import BACKEND_NAMES, BACKENDS, ensure_backend, installed_backends  # noqa: E402
from backendlab.errors import BackendlabError, UsageError  # noqa: E402
from backendlab.native_logs import drop_startup_chatter  # noqa: E402

drop_startup_chatter()

# Lazy: these pull in Keras, which must not happen at `import backendlab`.
_LAZY = {
    "backend_info": "backendlab.training",
    "run_training": "backendlab.training",
    "prepare": "backendlab.training",
    "train": "backendlab.training",
    "TrainStep": "backendlab.training",
    "load_dataset": "backendlab.data",
    "build_model": "backendlab.models",
    "MODELS": "backendlab.models",
    "DATASETS": "backendlab.data",
    "compare": "backendlab.compare",
    "bench": "backendlab.bench",
    "portable_init": "backendlab.init",
    "set_random_seed": "backendlab.training.keras_fixes",
}

__all__ = ["BACKENDS", "BACKEND_NAMES", "BackendlabError", "UsageError", "ensure_backend", "installed_backends", *_LAZY]


__getattr__ = lazy.exports(__name__, _LAZY)
