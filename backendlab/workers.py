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

import importlib
import json
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
from backendlab.specs import load_callable

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
    processes: int = 1,
    on_progress: Callable[[dict], None] | None = None,
    poll_s: float = 0.2,
) -> WorkerOutcome:
    """Run one worker to its end and say how it ended; never raises for the worker's faults."""
    workdir = Path(workdir)
    prepare_workdir(workdir, job)
    full_env = {**os.environ, **QUIET_ENV, **(env or {}), "KERAS_BACKEND": backend}
    start = time.perf_counter()
    with open(workdir / LOG, "wb") as log:
        tree = ProcessTree(
            launch_command(ALL_BACKENDS[backend], devices, module, [str(workdir / JOB)], processes),
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
                pass_progress(workdir, on_progress)
                time.sleep(poll_s)
        finally:
            # Timed out, interrupted, or done: nothing the worker started (torchrun's ranks) lives on.
            tree.kill()
    return job_outcome(backend, workdir, proc.returncode, time.perf_counter() - start, timeout if timed_out else None)


def job_outcome(
    backend: str,
    workdir: Path,
    code: int | None,
    wall: float,
    timed_out_after: float | None = None,
    fallback_log: Path | None = None,
) -> WorkerOutcome:
    """How a job ended, from its exit code (negative: killed by that signal) and what its folder holds.

    ``timed_out_after``: it was killed after that many seconds; ``fallback_log``: where to look for
    the tail when the job's own log is empty (a worker that died before the job began).
    """
    tail = _tail(workdir / LOG) or (_tail(fallback_log) if fallback_log else "")
    if timed_out_after is not None:
        message = f"no result after the {timed_out_after:g}s timeout; killed"
        return WorkerOutcome(backend, "timeout", code, wall, None, message, tail)
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return WorkerOutcome(backend, "crashed", code, wall, None, f"worker killed by signal {name}", tail)
    if code == 2 and USAGE_PREFIX in tail:
        message = tail[tail.rindex(USAGE_PREFIX) + len(USAGE_PREFIX) :].splitlines()[0]
        return WorkerOutcome(backend, "usage", code, wall, None, message, tail)
    if code != 0 or not (workdir / RESULT).exists():
        return WorkerOutcome(backend, "failed", code, wall, None, _last_error_line(tail) or f"exit status {code}", tail)
    return WorkerOutcome(backend, "ok", code, wall, read_json(workdir / RESULT), "", "")


def pass_progress(workdir: Path, on_progress: Callable[[dict], None] | None) -> None:
    """Hand the job's latest ``progress.json`` to ``on_progress``, if there is one yet."""
    if on_progress and (workdir / PROGRESS).exists():
        try:
            on_progress(read_json(workdir / PROGRESS))
        except (OSError, ValueError):  # being replaced just now
            pass


def prepare_workdir(workdir: Path, job: dict) -> None:
    """A job's folder with its ``job.json``, and nothing an earlier job in it left that could pass for this one's."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (RESULT, PROGRESS, LOG):
        (workdir / name).unlink(missing_ok=True)
    write_json(workdir / JOB, job)


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
    """Entry point of a one-job worker module: read the job, run ``handler``, write its result."""
    from backendlab.launch import note_rank

    die_with_orchestrator()
    note_rank()
    code = _run_job(handler, Path(sys.argv[1]))
    if code and "BACKENDLAB_PROCESS_ID" in os.environ:  # one of --processes: do not wait for the others
        from backendlab.launch import leave_now

        leave_now(code)
    return code


# --- a warm worker: many jobs, one import ------------------------------------------------

#: The environment variable that tells a warm worker which inherited file descriptor is its control channel.
CONTROL_FD = "BACKENDLAB_CONTROL_FD"


def _run_job(handler: Callable[[dict, Path, Progress], dict], job_path: Path) -> int:
    """Run one job and write its result: 0 done, 2 bad input (one line on stderr), 1 failed (a traceback)."""
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


def serve_main() -> int:
    """A warm worker (``python -m backendlab.workers``): import the framework once, then run jobs until stdin closes.

    Each stdin line is ``{"handler": "module:function", "job": "<folder>/job.json", "env": {...}}``
    (or ``path/to/file.py:function``).
    The job's output goes to ``<folder>/worker.log`` and its result to ``<folder>/result.json``, as a
    one-job worker's would; after each job one line ``{"event": "done", "code": 0|1|2}`` goes to the
    control channel, and :class:`~backendlab.isolation.Baseline` puts back the state the job changed.
    """
    die_with_orchestrator()
    control = os.fdopen(int(os.environ.pop(CONTROL_FD)), "w", buffering=1)
    jobs = os.fdopen(os.dup(0), "r")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # a job that reads stdin must not eat the next job
    start = time.perf_counter()
    backend = ALL_BACKENDS[os.environ["KERAS_BACKEND"]]
    import keras  # noqa: F401  (and the framework with it: the cost every later job is spared)

    if backend.trainable:
        importlib.import_module(backend.module)
        importlib.import_module("backendlab.training.run")  # and what it needs: scikit-learn's datasets, h5py
    from backendlab.training.keras_fixes import avoid_needless_tensorflow

    avoid_needless_tensorflow()
    import_s = time.perf_counter() - start
    from backendlab.isolation import Baseline

    baseline = Baseline.take()
    control.write(json.dumps({"event": "ready", "import_s": import_s}) + "\n")
    saved_out, saved_err = os.dup(1), os.dup(2)
    for line in jobs:
        request = json.loads(line)
        job_path = Path(request["job"])
        sys.stdout.flush(), sys.stderr.flush()
        with open(job_path.parent / LOG, "ab") as log:
            os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        os.environ.update(request.get("env") or {})
        try:
            code = _run_job(load_callable(request["handler"], "job handler"), job_path)
        except UsageError as exc:  # the handler could not even be found
            print(f"{USAGE_PREFIX}{exc}", file=sys.stderr, flush=True)
            code = 2
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved_out, 1), os.dup2(saved_err, 2)
        baseline.restore()
        control.write(json.dumps({"event": "done", "code": code}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(serve_main())
