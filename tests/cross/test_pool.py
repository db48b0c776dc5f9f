"""Warm workers: one import serves many jobs, no job sees another's state, and faults cost one job only.

Runs in every backend's session, on that backend's worker.
"""

from __future__ import annotations

from helpers import POOL_JOBS

JOBS = str(POOL_JOBS)


def _run(pool, backend, handler, folder, job=None, **kwargs):
    return pool.run(backend, f"{JOBS}:{handler}", job or {}, folder, **kwargs)


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
