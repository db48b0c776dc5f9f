"""Warm workers: one process per backend that imports its framework once and then runs job after job.

The orchestrator imports no framework. A :class:`WorkerPool` starts a worker per backend when one
is first asked for (``python -m backendlab.workers``, with ``KERAS_BACKEND`` set), and keeps it:
the Nth job costs its compute, not an import. Jobs keep the one-job protocol of
:func:`~backendlab.workers.run_worker`: ``job.json`` in a folder, ``progress.json`` and
``result.json`` written there atomically, the job's output in ``worker.log``, and a
:class:`~backendlab.workers.WorkerOutcome` back, never an exception for the worker's faults.

A worker that crashes or runs past a job's timeout is killed, with everything it started;
that job fails, and the next job for its backend starts a fresh worker. Between jobs the
worker puts back Keras's global state, the seeds and the registered classes
(:mod:`backendlab.isolation`).

``shared_pool()`` is one pool for the life of the process (a pytest session, a notebook):
closed, with its workers, when the process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from backendlab.backends import ALL_BACKENDS
from backendlab.processes import ProcessTree
from backendlab.workers import CONTROL_FD, JOB, QUIET_ENV, WorkerOutcome, job_outcome, pass_progress, prepare_workdir

#: The longest a worker may take to import its framework before it counts as hung.
START_TIMEOUT_S = 300.0


@dataclass
class Task:
    """One job for one backend, as :meth:`WorkerPool.run_many` takes it."""

    backend: str
    handler: str  # "module:function", the job handler the worker imports and calls
    job: dict
    workdir: Path
    timeout: float | None = None
    on_progress: Callable[[dict], None] | None = None
    env: dict[str, str] = field(default_factory=dict)  # set in the worker for this job only


class WarmWorker:
    """One backend's worker process and its two channels: jobs in on stdin, events back on a pipe."""

    def __init__(self, backend: str, log: Path, devices: int = 1, env: dict[str, str] | None = None):
        self.backend, self.devices, self.log_path = backend, devices, log
        read_fd, write_fd = os.pipe()
        full_env = {**os.environ, **QUIET_ENV, **(env or {}), "KERAS_BACKEND": backend, CONTROL_FD: str(write_fd)}
        if devices > 1 and ALL_BACKENDS[backend].host_devices_flag:
            variable, flag = ALL_BACKENDS[backend].host_devices_flag
            full_env[variable] = f"{full_env.get(variable, '')} {flag.format(devices=devices)}".strip()
        with open(log, "ab") as out:
            self.tree = ProcessTree(
                [sys.executable, "-m", "backendlab.workers"],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                pass_fds=(write_fd,),
            )
        os.close(write_fd)
        self.events = read_fd
        self.buffer = b""
        self.import_s: float | None = None  # seconds to import Keras and the framework; set once it is ready

    @property
    def alive(self) -> bool:
        return self.tree.proc.poll() is None

    def event(self, wait_s: float) -> dict | None:
        """The worker's next event, waiting up to ``wait_s``; None if none came."""
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.events], [], [], wait_s)
            if not ready:
                return None
            chunk = os.read(self.events, 65536)
            if not chunk:  # the worker closed it: it died
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        event = json.loads(line)
        if event["event"] == "ready":
            self.import_s = event["import_s"]
        return event

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> bool:
        deadline = time.perf_counter() + timeout
        while self.import_s is None and self.alive and time.perf_counter() < deadline:
            self.event(0.2)
        return self.import_s is not None

    def send(self, task: Task) -> None:
        request = {"handler": task.handler, "job": str(task.workdir / JOB), "env": task.env}
        self.tree.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.tree.proc.stdin.flush()

    def kill(self) -> None:
        """Kill it and everything it started; it cannot be used again."""
        self.tree.kill()
        if self.tree.proc.stdin:
            self.tree.proc.stdin.close()
        if self.events != -1:
            os.close(self.events)
            self.events = -1


class WorkerPool:
    """Warm workers, one per backend (and device count), started on first use and kept.

    ``start()`` lets several import at once; ``run_many()`` runs tasks on different backends
    side by side; ``run()`` runs one. Close it (or use it as a context manager) to stop them.
    """

    def __init__(self, env: dict[str, str] | None = None, poll_s: float = 0.1):
        self.env, self.poll_s = env or {}, poll_s
        self.workers: dict[tuple[str, int], WarmWorker] = {}
        self.folder = Path(tempfile.mkdtemp(prefix="backendlab-pool-"))
        self.started = 0  # workers started so far, replacements included: each logs to a file of its own

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def worker(self, backend: str, devices: int = 1) -> WarmWorker:
        key = (backend, devices)
        current = self.workers.get(key)
        if current is None or not current.alive:
            if current is not None:
                current.kill()
            log = self.folder / f"{backend}-{devices}-{self.started}.log"
            self.workers[key] = WarmWorker(backend, log, devices, self.env)
            self.started += 1
        return self.workers[key]

    def start(self, backends: Iterable[str], devices: int = 1) -> None:
        """Start these backends' workers now, all at once: their imports overlap."""
        for backend in backends:
            self.worker(backend, devices)

    def wait_ready(self, backends: Iterable[str], devices: int = 1) -> dict[str, float | None]:
        """Wait until each has imported its framework: its import time in seconds, None where it died trying."""
        return {b: (w.import_s if (w := self.worker(b, devices)).wait_ready() else None) for b in backends}

    def run(
        self,
        backend: str,
        handler: str,
        job: dict,
        workdir: str | os.PathLike,
        *,
        timeout: float | None = None,
        on_progress: Callable[[dict], None] | None = None,
        devices: int = 1,
        env: dict[str, str] | None = None,
    ) -> WorkerOutcome:
        task = Task(backend, handler, job, Path(workdir), timeout, on_progress, env or {})
        return self.run_many([task], devices=devices)[0]

    def run_many(self, tasks: list[Task], devices: int = 1) -> list[WorkerOutcome]:
        """Run tasks on distinct backends side by side; their outcomes in the same order."""
        backends = [t.backend for t in tasks]
        if len(set(backends)) != len(backends):
            raise ValueError(f"run_many takes one task per backend at a time, got {backends}")
        running: dict[int, tuple[WarmWorker, float]] = {}
        outcomes: dict[int, WorkerOutcome] = {}
        try:
            for i, task in enumerate(tasks):
                prepare_workdir(task.workdir, task.job)
                worker = self.worker(task.backend, devices)
                worker.send(task)  # a worker still importing reads it once ready
                running[i] = (worker, time.perf_counter())
            while running:
                for i, (worker, start) in list(running.items()):
                    outcome = self._poll(tasks[i], worker, start)
                    if outcome is not None:
                        outcomes[i] = outcome
                        del running[i]
                if running:
                    time.sleep(self.poll_s)
        finally:
            for worker, _ in running.values():  # interrupted: a worker mid-job cannot be trusted with the next
                worker.kill()
        return [outcomes[i] for i in range(len(tasks))]

    def _poll(self, task: Task, worker: WarmWorker, start: float) -> WorkerOutcome | None:
        """The task's outcome if it has ended, else None (after passing on its progress)."""
        wall = time.perf_counter() - start
        event = worker.event(0)
        while event is not None and event["event"] != "done":
            event = worker.event(0)
        if event is not None:
            return job_outcome(task.backend, task.workdir, event["code"], wall)
        if not worker.alive:  # it died mid-job (or while importing): this job fails, the next gets a new worker
            code = worker.tree.proc.returncode
            worker.kill()
            return job_outcome(task.backend, task.workdir, code, wall, fallback_log=worker.log_path)
        if task.timeout is not None and wall > task.timeout:
            worker.kill()
            return job_outcome(task.backend, task.workdir, None, wall, timed_out_after=task.timeout)
        pass_progress(task.workdir, task.on_progress)
        return None

    def close(self) -> None:
        """Stop every worker and remove the pool's own logs."""
        for worker in self.workers.values():
            worker.kill()
        self.workers.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


_SHARED: WorkerPool | None = None


def shared_pool() -> WorkerPool:
    """One pool for the life of this process: its workers stay warm from job to job, and go when it exits."""
    global _SHARED
    if _SHARED is None:
        _SHARED = WorkerPool()
        atexit.register(_SHARED.close)
    return _SHARED
