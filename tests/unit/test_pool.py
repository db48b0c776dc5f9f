"""Warm workers: one import serves many jobs, no job sees another's state, and faults cost one job only.

Runs in every backend's session, on that backend's worker.
"""

from __future__ import annotations

import pytest
from helpers import POOL_JOBS

from backendlab.workers.protocol import Job

JOBS = str(POOL_JOBS)


def test_run_many_takes_one_task_per_backend(pool, backend, tmp_path):
    tasks = [Job(backend, f"{JOBS}:state", {}, tmp_path / str(i)) for i in range(2)]
    with pytest.raises(ValueError, match="one task per backend at a time"):
        pool.run_many(tasks)
