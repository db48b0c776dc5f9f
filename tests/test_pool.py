"""Warm workers: one import serves many jobs, no job sees another's state, and faults cost one job only.

Runs in every backend's session, on that backend's worker.
"""

from __future__ import annotations

import pytest
from helpers import FIXTURES, POOL_JOBS

from backendlab.workers.protocol import Job

JOBS = str(POOL_JOBS)
USER_FILE = f"{FIXTURES / 'registered_models.py'}:subclassed_registered"


def _run(pool, backend, handler, folder, job=None, **kwargs):
    return pool.run(backend, f"{JOBS}:{handler}", job or {}, folder, **kwargs)


def test_jobs_share_one_import_and_each_starts_from_a_clean_state(pool, backend, tmp_path):
    first = _run(pool, backend, "state", tmp_path / "1")
    assert first.ok, first.log_tail
    assert pool.workers[(backend, 1)].import_s > 0
    dirty = _run(pool, backend, "dirty", tmp_path / "2", {"user_file": USER_FILE})
    assert dirty.ok, dirty.log_tail
    after = _run(pool, backend, "state", tmp_path / "3")
    assert after.ok, after.log_tail
    # The same process served all three: one import.
    assert first.result["pid"] == dirty.result["pid"] == after.result["pid"]
    # And the third saw nothing of the second: config, registry, user modules, env, cwd, names, seeds.
    assert after.result == first.result
    assert after.result["floatx"] == "float32" and after.result["layer_name"] == "dense"
    assert not after.result["registered"] and not after.result["user_module"]


def test_a_job_that_raises_fails_alone_and_the_worker_serves_the_next(pool, backend, tmp_path):
    before = _run(pool, backend, "state", tmp_path / "0")
    failed = _run(pool, backend, "fail", tmp_path / "1")
    assert failed.status == "failed"
    assert failed.message == "RuntimeError: injected failure in a pool job"
    assert "Traceback" in failed.log_tail
    usage = _run(pool, backend, "bad_input", tmp_path / "2")
    assert usage.status == "usage" and usage.message == "this job's input is wrong: say so in one line"
    after = _run(pool, backend, "state", tmp_path / "3")
    assert after.ok and after.result["pid"] == before.result["pid"]


def test_a_worker_killed_mid_job_fails_that_job_and_is_replaced(pool, backend, tmp_path):
    before = _run(pool, backend, "state", tmp_path / "0")
    died = _run(pool, backend, "die", tmp_path / "1")
    assert died.status == "crashed" and died.message == "worker killed by signal SIGKILL"
    after = _run(pool, backend, "state", tmp_path / "2")
    assert after.ok and after.result["pid"] != before.result["pid"]


def test_a_hung_job_times_out_its_worker_is_killed_and_replaced(pool, backend, tmp_path):
    before = _run(pool, backend, "state", tmp_path / "0")
    seen = []
    hung = _run(pool, backend, "hang", tmp_path / "1", timeout=3, on_progress=seen.append)
    assert hung.status == "timeout" and hung.message == "no result after the 3s timeout; killed"
    assert seen and seen[-1]["stage"] == "hanging"
    after = _run(pool, backend, "state", tmp_path / "2")
    assert after.ok and after.result["pid"] != before.result["pid"]


def test_a_jobs_environment_is_its_own(pool, backend, tmp_path):
    job = {"name": "BACKENDLAB_POOL_TEST"}
    mine = pool.run(backend, f"{JOBS}:environment", job, tmp_path / "1", env={"BACKENDLAB_POOL_TEST": "mine"})
    later = _run(pool, backend, "environment", tmp_path / "2", job)
    assert mine.result == {"value": "mine"} and later.result == {"value": None}


def test_an_unknown_handler_is_one_line(pool, backend, tmp_path):
    done = pool.run(backend, f"{JOBS}:no_such_handler", {}, tmp_path)
    assert done.status == "usage"
    assert done.message == f"job handler {JOBS + ':no_such_handler'!r}: {JOBS!r} has no function 'no_such_handler'"


def test_run_many_takes_one_task_per_backend(pool, backend, tmp_path):
    tasks = [Job(backend, f"{JOBS}:state", {}, tmp_path / str(i)) for i in range(2)]
    with pytest.raises(ValueError, match="one task per backend at a time"):
        pool.run_many(tasks)
