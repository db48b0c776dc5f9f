"""Worker processes: one backend each, run for an orchestrator that imports no framework.

``protocol.py``   what crosses the process boundary: :class:`Job`, :class:`Outcome`, the files, the events
``ranks.py``      which process this is in a run of several (torchrun's ranks, ``--processes``)
``runner.py``     the one way to run a job: :class:`WorkerPool` (warm workers, or a process of the job's own)
``serve.py``      the worker's side: its entry point, the warm server loop, isolation between jobs
``launch.py``     ``--processes N``: N processes that behave like N hosts, and the launcher that watches them
``processes.py``  process lifetime: nothing backendlab starts outlives it

The names below are imported on first use, so that ``backendlab.workers.ranks`` (which the
per-backend ``_impl`` modules import) costs no more than itself.
"""

from __future__ import annotations

from backendlab import lazy

_EXPORTS = {
    "Job": "protocol",
    "Outcome": "protocol",
    "WorkerPool": "runner",
    "run_job": "runner",
    "shared_pool": "runner",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy.exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})
