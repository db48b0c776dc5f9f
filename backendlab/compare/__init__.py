"""``backendlab compare``: the same model, weights and batches on every backend, compared.

The orchestrator here imports no framework; each backend trains in its own worker.
"""

from backendlab.compare.engine import (  # noqa: F401
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    DEFAULT_STAT_RTOL,
    Compare,
    CompareOptions,
    CompareReport,
    compare,
)
