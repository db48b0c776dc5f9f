"""``BACKENDLAB_THREADS=N``: N threads for every worker's framework, set before it starts. Imports no framework.

Unset, each framework keeps its own count (one thread per usable core). Set, the orchestrator puts the
count in each worker's environment (:func:`worker_env`), where every framework reads it when it starts:
OpenMP's and the BLAS libraries' variables (PyTorch's intra-op pool, MKL, OpenBLAS), TensorFlow's
``TF_NUM_INTRAOP_THREADS`` (its intra-op pool reads no OpenMP variable) and XLA's ``PJRT_NPROC`` (the size
of JAX's CPU client's Eigen pool). The ranks of a job in several processes share the N. Nothing here
looks at the machine's load: a count that follows the momentary load makes runs non-reproducible, and
choosing it from idle cores was measured to gain nothing beyond noise (docs/threads.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from backendlab.errors import UsageError

THREADS_ENV = "BACKENDLAB_THREADS"
#: Read once, when the framework (or its OpenMP, BLAS or XLA runtime) starts.
COUNT_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "PJRT_NPROC",
)


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def requested_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """The count ``BACKENDLAB_THREADS`` asks for; None where it is unset (each framework's own)."""
    text = environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(
            f"{THREADS_ENV}={text!r} is not a thread count: set it to a whole number like 2, "
            "or unset it for each framework's own count"
        )
    return int(text)


def worker_env(processes: int = 1, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What a worker's environment needs, before its framework starts, to run the requested count:
    shared among ``processes`` processes that compute at once (at least one each); empty where none is asked."""
    threads = requested_threads(environ)
    if threads is None:
        return {}
    return dict.fromkeys(COUNT_VARIABLES, str(max(1, threads // max(1, processes))))
