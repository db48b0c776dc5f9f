"""Worker processes: one backend each, started by an orchestrator that imports no framework.

The orchestrator writes ``job.json`` into a fresh folder and starts
``python -m <module> <folder>/job.json`` with ``KERAS_BACKEND`` set. The worker writes
``progress.json`` now and then and ``result.json`` at the end, each atomically, and
its stdout and stderr go to ``worker.log``. A worker that raises, is killed by a
signal, or runs past its timeout is reported as such with the tail of its log.

No process a worker starts outlives it (:class:`~backendlab.processes.ProcessTree`): a timeout, Ctrl-C or
SIGTERM kills the worker and everything below it, torchrun's ranks included (torchrun
starts each in a session of its own, out of reach of the worker's process group), and
on Linux each of them dies with its parent, so not even a SIGKILL of the orchestrator
leaves one writing into the output folder.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backendlab.backends import ALL_BACKENDS, is_main_process, launch_command
from backendlab.errors import UsageError
from backendlab.processes import ProcessTree, die_with_orchestrator
from backendlab.results import read_json, write_json

JOB, RESULT, PROGRESS, LOG = "job.json", "result.json", "progress.json", "worker.log"
USAGE_PREFIX = "backendlab: error: "

#: Quiet the frameworks' start-up chatter in worker logs, so a failure's tail shows the failure.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}


@dataclass
class WorkerOutcome:
    backend: str
    status: str  # ok | usage (bad input, exit 2) | failed | crashed | timeout
    returncode: int | None
    wall_s: float
    result: dict | None
    message: str  # empty when ok; otherwise what went wrong, in one line
    log_tail: str  # the last lines of the worker's output when it did not succeed

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _last_error_line(tail: str, limit: int = 240) -> str:
    """The last Python exception in a log, on one line (Keras spreads its messages over several)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in tail.splitlines()]
    lines = [line for line in lines if line]
    for i in range(len(lines) - 1, -1, -1):
        head = lines[i].split(":", 1)[0]
        if re.fullmatch(r"[\w.]*(Error|Exception|Interrupt)", head):
            text = " ".join(lines[i:])
            return text if len(text) <= limit else text[: limit - 3] + "..."
    return lines[-1] if lines else ""


def run_worker(
    module: str,
    backend: str,
    job: dict,
    workdir: str | os.PathLike,
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    devices: int = 1,
    on_progress: Callable[[dict], None] | None = None,
    poll_s: float = 0.2,
) -> WorkerOutcome:
    """Run one worker to its end and say how it ended; never raises for the worker's faults."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (RESULT, PROGRESS):
        (workdir / name).unlink(missing_ok=True)
    write_json(workdir / JOB, job)
    full_env = {**os.environ, **QUIET_ENV, **(env or {}), "KERAS_BACKEND": backend}
    start = time.perf_counter()
    with open(workdir / LOG, "wb") as log:
        tree = ProcessTree(
            launch_command(ALL_BACKENDS[backend], devices, module, [str(workdir / JOB)]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        proc = tree.proc
        timed_out = False
        try:
            while proc.poll() is None:
                if timeout is not None and time.perf_counter() - start > timeout:
                    timed_out = True
                    break
                if on_progress and (workdir / PROGRESS).exists():
                    try:
                        on_progress(read_json(workdir / PROGRESS))
                    except (OSError, ValueError):
                        pass
                time.sleep(poll_s)
        finally:
            # Timed out, interrupted, or done: nothing the worker started (torchrun's ranks) lives on.
            tree.kill()
    wall = time.perf_counter() - start
    rc = proc.returncode
    tail = _tail(workdir / LOG)
    if timed_out:
        return WorkerOutcome(
            backend, "timeout", rc, wall, None, f"no result after the {timeout:g}s timeout; killed", tail
        )
    if rc < 0:
        name = signal.Signals(-rc).name
        return WorkerOutcome(backend, "crashed", rc, wall, None, f"worker killed by signal {name}", tail)
    if rc == 2 and USAGE_PREFIX in tail:
        message = tail[tail.rindex(USAGE_PREFIX) + len(USAGE_PREFIX) :].splitlines()[0]
        return WorkerOutcome(backend, "usage", rc, wall, None, message, tail)
    if rc != 0 or not (workdir / RESULT).exists():
        return WorkerOutcome(backend, "failed", rc, wall, None, _last_error_line(tail) or f"exit status {rc}", tail)
    return WorkerOutcome(backend, "ok", rc, wall, read_json(workdir / RESULT), "", "")


# --- the worker's side ----------------------------------------------------------------


class Progress:
    """Written by a worker as it goes; throttled so it costs nothing measurable."""

    def __init__(self, workdir: Path, every_s: float = 0.25):
        self.path, self.every_s, self.last = workdir / PROGRESS, every_s, 0.0

    def __call__(self, done: int, total: int, stage: str = "", force: bool = False, **extra: Any) -> None:
        now = time.perf_counter()
        if is_main_process() and (force or now - self.last >= self.every_s):
            write_json(self.path, {"done": done, "total": total, "stage": stage, **extra})
            self.last = now


def worker_main(handler: Callable[[dict, Path, Progress], dict]) -> int:
    """Entry point of a worker module: read the job, run ``handler``, write its result."""
    die_with_orchestrator()
    job_path = Path(sys.argv[1])
    workdir = job_path.parent
    job = read_json(job_path)
    try:
        result = handler(job, workdir, Progress(workdir))
    except UsageError as exc:  # bad input, not a fault of the backend: one line, exit 2
        print(f"{USAGE_PREFIX}{exc}", file=sys.stderr, flush=True)
        return 2
    except Exception:
        traceback.print_exc()
        return 1
    if is_main_process():  # under torchrun every rank computes the same result; one writes it
        write_json(workdir / RESULT, result)
    return 0
