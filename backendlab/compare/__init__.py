"""``backendlab compare``: the same model, weights and batches on every backend, compared.

The orchestrator imports no framework; each backend trains in its own worker.

``results.py``  what a run is asked (CompareOptions) and produces (CompareReport), as dataclasses
``verdict.py``  the registry of compared quantities and the pure function from outcomes to a report
``run.py``      the orchestrator: plans the workers, runs them, collects their files
``worker.py``   the worker: trains or loads on one backend
``report.py``   the terminal table, report.md and loss_curves.png, drawn from a CompareReport
"""

from backendlab import lazy
from backendlab.compare.results import (  # noqa: F401
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    DEFAULT_STAT_RTOL,
    CompareOptions,
    CompareReport,
)
from backendlab.compare.run import Compare, compare  # noqa: F401

lazy.callable_package(__name__, "backendlab.api:compare")  # backendlab.compare(...) runs the command
