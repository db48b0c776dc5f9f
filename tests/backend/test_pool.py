"""Warm workers: one import serves many jobs, no job sees another's state, and faults cost one job only.

Runs in every backend's session, on that backend's worker.
"""

from __future__ import annotations

from helpers import FIXTURES, POOL_JOBS

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
