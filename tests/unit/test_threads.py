"""BACKENDLAB_THREADS (backendlab.workers.threads), and the thread counts bench and tune show for each row."""

from __future__ import annotations

import pytest

from backendlab.errors import UsageError
from backendlab.workers.runner import WorkerPool
from backendlab.workers.threads import requested_threads, worker_env

EVERY_POOL = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "PJRT_NPROC")


def test_unset_leaves_each_framework_its_own_count():
    assert requested_threads({}) is None and requested_threads({"BACKENDLAB_THREADS": " "}) is None
    assert worker_env(environ={}) == {}
    assert worker_env(environ={"OMP_NUM_THREADS": "3"}) == {}  # a user's own OpenMP count passes through as it is


def test_a_count_sizes_every_frameworks_pool_before_it_starts():
    env = worker_env(environ={"BACKENDLAB_THREADS": "3"})
    assert env == dict.fromkeys(EVERY_POOL, "3")


@pytest.mark.parametrize(("threads", "processes", "each"), [("4", 2, "2"), ("5", 2, "2"), ("2", 4, "1"), ("1", 1, "1")])
def test_the_processes_of_one_run_share_the_count(threads, processes, each):
    env = worker_env(processes, environ={"BACKENDLAB_THREADS": threads})
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == env["PJRT_NPROC"] == each


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", "auto"])
def test_a_bad_count_is_one_line_before_any_worker_starts(text, monkeypatch):
    said = (
        f"BACKENDLAB_THREADS={text!r} is not a thread count: set it to a whole number like 2, "
        "or unset it for each framework's own count"
    )
    with pytest.raises(UsageError) as caught:
        requested_threads({"BACKENDLAB_THREADS": text})
    assert str(caught.value) == said
    monkeypatch.setenv("BACKENDLAB_THREADS", text)
    with pytest.raises(UsageError) as caught:
        WorkerPool()
    assert str(caught.value) == said


def test_tune_and_bench_tables_say_how_many_threads_each_row_ran():
    from backendlab.bench.results import BenchRow
    from backendlab.tune.report import HEADERS, row_cells
    from backendlab.tune.results import TuneRow

    row = TuneRow("jax", "mlp", 256, {}, "fit jit=None", samples_per_sec=1000.0, threads=2, is_default=True)
    assert dict(zip(HEADERS, row_cells(row)))["threads"] == "2"
    failed = TuneRow("torch", "mlp", 256, {}, "fit", status="failed", note="boom", threads=1)
    assert row_cells(failed)[4:7] == ["1", "failed", "boom"]
    assert len(row_cells(failed)) == len(HEADERS)
    bench = BenchRow("tensorflow", "keras", "mlp", "fit", 256, "True", 1, threads=2)
    assert bench.settings == "jit=True spe=1 thr=2"
