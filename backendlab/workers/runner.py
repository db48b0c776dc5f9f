"""The one way backendlab runs a job: a :class:`WorkerPool`, which imports no framework.

A pool keeps a warm worker per backend (and device count), started when one is first asked for
(``python -m backendlab.workers``, with ``KERAS_BACKEND`` set): it imports its framework
once, and the Nth job costs its compute, not an import. A job that must start from nothing gets
a process of its own, started for it and watched the same way: one marked ``fresh`` (it sets
thread counts before its framework starts), and one that runs in several processes (torchrun's
ranks for ``--devices N`` on torch, or ``--processes N``). :func:`run_job` runs one job on a pool
of its own: bench and tune run so.

Either way the job's folder gets ``job.json``; ``progress.json`` and ``result.json`` are written
there atomically, the job's output goes to ``worker.log`` (:mod:`backendlab.workers.protocol`),
and an :class:`~backendlab.workers.protocol.Outcome` comes back, never an exception for the
worker's faults. A worker that crashes or runs past its job's timeout is killed, with everything
it started (:class:`~backendlab.workers.processes.ProcessTree`); that job fails with the tail of
its log, and the next job for its backend starts a fresh worker. Between jobs a warm worker puts
back Keras's global state, the seeds and the registered classes (:class:`~backendlab.workers.serve.Baseline`).

``shared_pool()`` is one pool for the life of the process (a pytest session, a notebook):
closed, with its workers, when the process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from backendlab.backends import ALL_BACKENDS, launch_command
from backendlab.results import read_json, write_json
from backendlab.workers.processes import ProcessTree
from backendlab.workers.protocol import (
    CONTROL_FD,
    JOB,
    LOG,
    PROGRESS,
    QUIET_ENV,
    RESULT,
    USAGE_PREFIX,
    Handler,
    Job,
    Outcome,
    handler_ref,
    job_request,
    last_error_line,
    tail,
)
from backendlab.workers.threads import requested_threads, worker_env

#: The worker's module (:mod:`backendlab.workers.serve`): a warm worker without arguments, a fresh one with
#: a job's file and handler.
SERVE = "backendlab.workers"
#: The longest a worker may take to import its framework before it counts as hung.
START_TIMEOUT_S = 300.0


def job_outcome(
    backend: str,
    workdir: Path,
    code: int | None,
    wall: float,
    timed_out_after: float | None = None,
    fallback_log: Path | None = None,
) -> Outcome:
    """How a job ended, from its exit code (negative: killed by that signal) and what its folder holds.

    ``timed_out_after``: it was killed after that many seconds; ``fallback_log``: where to look for
    the tail when the job's own log is empty (a worker that died before the job began).
    """
    log_tail = tail(workdir / LOG) or (tail(fallback_log) if fallback_log else "")
    if timed_out_after is not None:
        message = f"no result after the {timed_out_after:g}s timeout; killed"
        return Outcome(backend, "timeout", code, wall, None, message, log_tail)
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return Outcome(backend, "crashed", code, wall, None, f"worker killed by signal {name}", log_tail)
    if code == 2 and USAGE_PREFIX in log_tail:
        message = log_tail[log_tail.rindex(USAGE_PREFIX) + len(USAGE_PREFIX) :].splitlines()[0]
        return Outcome(backend, "usage", code, wall, None, message, log_tail)
    if code != 0 or not (workdir / RESULT).exists():
        # From a longer tail: a Keras message under JAX's trailer can push the exception's line out of the last 15.
        message = last_error_line(tail(workdir / LOG, 200) or log_tail) or f"exit status {code}"
        return Outcome(backend, "failed", code, wall, None, message, log_tail)
    return Outcome(backend, "ok", code, wall, read_json(workdir / RESULT), "", "")


def pass_progress(workdir: Path, on_progress: Callable[[dict], None] | None) -> None:
    """Hand the job's latest ``progress.json`` to ``on_progress``, if there is one yet."""
    if on_progress and (workdir / PROGRESS).exists():
        try:
            on_progress(read_json(workdir / PROGRESS))
        except (OSError, ValueError):  # being replaced just now
            pass


def prepare_workdir(job: Job) -> None:
    """A job's folder with its ``job.json``, and nothing an earlier job in it left that could pass for this one's."""
    job.workdir.mkdir(parents=True, exist_ok=True)
    for name in (RESULT, PROGRESS, LOG):
        (job.workdir / name).unlink(missing_ok=True)
    write_json(job.workdir / JOB, job.payload)


def needs_own_process(job: Job) -> bool:
    """Whether a job runs in a process (or processes) started for it alone, rather than on a warm worker."""
    return job.fresh or job.processes > 1 or (job.devices > 1 and ALL_BACKENDS[job.backend].launcher is not None)


class WarmWorker:
    """One backend's worker process and its two channels: jobs in on stdin, events back on a pipe."""

    def __init__(self, backend: str, log: Path, devices: int = 1, env: dict[str, str] | None = None):
        self.backend, self.devices, self.log_path = backend, devices, log
        read_fd, write_fd = os.pipe()
        full_env = {
            **os.environ,
            **QUIET_ENV,
            **worker_env(),  # BACKENDLAB_THREADS: warm workers compute one at a time where it is timed
            **(env or {}),
            "KERAS_BACKEND": backend,
            CONTROL_FD: str(write_fd),
        }
        if devices > 1 and ALL_BACKENDS[backend].host_devices_flag:
            variable, flag = ALL_BACKENDS[backend].host_devices_flag
            full_env[variable] = f"{full_env.get(variable, '')} {flag.format(devices=devices)}".strip()
        with open(log, "ab") as out:
            self.tree = ProcessTree(
                [sys.executable, "-m", SERVE],
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

    def send(self, job: Job) -> None:
        self.tree.proc.stdin.write(job_request(job.handler, job.workdir / JOB, job.env).encode())
        self.tree.proc.stdin.flush()

    def ended(self) -> tuple[int | None, Path | None] | None:
        """The job's exit status and where else to look for its log, once it has ended; else None."""
        event = self.event(0)
        while event is not None and event["event"] != "done":
            event = self.event(0)
        if event is not None:
            return event["code"], None
        if not self.alive:  # it died mid-job (or while importing): this job fails, the next gets a new worker
            code = self.tree.proc.returncode
            self.kill()
            return code, self.log_path
        return None

    def kill(self) -> None:
        """Kill it and everything it started; it cannot be used again."""
        self.tree.kill()
        if self.tree.proc.stdin:
            self.tree.proc.stdin.close()
        if self.events != -1:
            os.close(self.events)
            self.events = -1


class OwnProcess:
    """A job's own process (or its launcher's: torchrun, ``--processes``), started for it and ended with it."""

    def __init__(self, job: Job, env: dict[str, str]):
        ranks = job.processes * (job.devices if ALL_BACKENDS[job.backend].launcher else 1)
        full_env = {**os.environ, **QUIET_ENV, **worker_env(ranks), **env, **job.env, "KERAS_BACKEND": job.backend}
        args = [str(job.workdir / JOB), handler_ref(job.handler)]
        command = launch_command(ALL_BACKENDS[job.backend], job.devices, SERVE, args, job.processes)
        with open(job.workdir / LOG, "wb") as log:
            self.tree = ProcessTree(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=full_env
            )

    def ended(self) -> tuple[int | None, Path | None] | None:
        if self.tree.proc.poll() is None:
            return None
        self.kill()  # nothing it started (torchrun's ranks) lives on
        return self.tree.proc.returncode, None

    def kill(self) -> None:
        self.tree.kill()


class WorkerPool:
    """Warm workers, one per backend (and device count), started on first use and kept.

    ``start()`` lets several import at once; ``run_many()`` runs jobs on different backends
    side by side; ``run()`` runs one. Close it (or use it as a context manager) to stop them.
    ``env``: set in every worker the pool starts, over the thread count ``BACKENDLAB_THREADS`` asks for
    (:mod:`backendlab.workers.threads`; a bad value is refused here, before any worker starts).
    """

    def __init__(self, env: dict[str, str] | None = None, poll_s: float = 0.1):
        requested_threads()
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
        handler: Handler | str,
        payload: dict,
        workdir: str | os.PathLike,
        *,
        timeout: float | None = None,
        on_progress: Callable[[dict], None] | None = None,
        devices: int = 1,
        env: dict[str, str] | None = None,
    ) -> Outcome:
        job = Job(backend, handler, payload, Path(workdir), timeout, on_progress, env or {}, devices)
        return self.run_many([job])[0]

    def run_many(self, jobs: list[Job]) -> list[Outcome]:
        """Run jobs on distinct backends side by side; their outcomes in the same order."""
        backends = [j.backend for j in jobs]
        if len(set(backends)) != len(backends):
            raise ValueError(f"run_many takes one task per backend at a time, got {backends}")
        running: dict[int, tuple[WarmWorker | OwnProcess, float]] = {}
        outcomes: dict[int, Outcome] = {}
        try:
            for i, job in enumerate(jobs):
                prepare_workdir(job)
                if needs_own_process(job):
                    running[i] = (OwnProcess(job, self.env), time.perf_counter())
                else:
                    worker = self.worker(job.backend, job.devices)
                    worker.send(job)  # a worker still importing reads it once ready
                    running[i] = (worker, time.perf_counter())
            while running:
                for i, (worker, start) in list(running.items()):
                    outcome = self._poll(jobs[i], worker, start)
                    if outcome is not None:
                        outcomes[i] = outcome
                        del running[i]
                if running:
                    time.sleep(self.poll_s)
        finally:
            for worker, _ in running.values():  # interrupted: a worker mid-job cannot be trusted with the next
                worker.kill()
        return [outcomes[i] for i in range(len(jobs))]

    def _poll(self, job: Job, worker: WarmWorker | OwnProcess, start: float) -> Outcome | None:
        """The job's outcome if it has ended, else None (after passing on its progress)."""
        wall = time.perf_counter() - start
        ended = worker.ended()
        if ended is not None:
            code, fallback_log = ended
            return job_outcome(job.backend, job.workdir, code, wall, fallback_log=fallback_log)
        if job.timeout is not None and wall > job.timeout:
            worker.kill()
            return job_outcome(job.backend, job.workdir, None, wall, timed_out_after=job.timeout)
        pass_progress(job.workdir, job.on_progress)
        return None

    def close(self) -> None:
        """Stop every worker and remove the pool's own logs."""
        for worker in self.workers.values():
            worker.kill()
        self.workers.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def run_job(job: Job) -> Outcome:
    """Run one job on a pool of its own, closed when it ends (mark it ``fresh`` for a process of its own)."""
    with WorkerPool() as pool:
        return pool.run_many([job])[0]


_SHARED: WorkerPool | None = None


def shared_pool() -> WorkerPool:
    """One pool for the life of this process: its workers stay warm from job to job, and go when it exits."""
    global _SHARED
    if _SHARED is None:
        _SHARED = WorkerPool()
        atexit.register(_SHARED.close)
    return _SHARED
