"""What crosses the process boundary between the orchestrator and a worker, named once for both sides.

A :class:`Job` goes out: its folder gets ``job.json`` (the job's payload, as its handler reads it),
and the worker is told the folder and the handler (:func:`handler_ref`). The worker writes
``progress.json`` now and then and ``result.json`` at the end, each atomically; its output goes to
``worker.log``. A warm worker also says, on its control channel, when it is ready and when each job
is done (:func:`ready_event`, :func:`done_event`). An :class:`Outcome` comes back: how it ended.

Imports nothing heavier than the standard library: both sides, and the launcher, use it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The files of a job's folder.
JOB, RESULT, PROGRESS, LOG = "job.json", "result.json", "progress.json", "worker.log"
#: Files a job's handler leaves beside ``result.json`` that the orchestrator reads by name.
MODEL, PROBE = "model.keras", "probe.npz"
#: How a process says that its input was wrong: one line, exit status 2.
USAGE_PREFIX = "backendlab: error: "
#: Quiet the frameworks' start-up chatter in worker logs, so a failure's tail shows the failure.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
#: The environment variable that tells a warm worker which inherited file descriptor is its control channel.
CONTROL_FD = "BACKENDLAB_CONTROL_FD"

#: A job handler: ``handler(payload, workdir, progress) -> result`` (what goes to ``result.json``).
Handler = Callable[[dict, Path, Callable[..., None]], dict]


@dataclass
class Job:
    """One job for one backend.

    ``handler`` is a function the worker imports by its module and name (it must be defined at
    module level), or a string: ``package.module:function``, or ``path/to/file.py:function`` for
    a handler in a file that is no importable module (tests' helpers). ``fresh``: run it in a
    process of its own that imports nothing before the handler runs (a handler that sets thread
    counts before the framework starts); jobs with ``processes > 1``, or with ``devices > 1`` on a
    backend with a launcher (torchrun), always run so.
    """

    backend: str
    handler: Handler | str
    payload: dict
    workdir: Path
    timeout: float | None = None
    on_progress: Callable[[dict], None] | None = None
    env: dict[str, str] = field(default_factory=dict)  # set in the worker for this job only
    devices: int = 1
    processes: int = 1
    fresh: bool = False

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)


@dataclass
class Outcome:
    """How a job ended; never an exception for the worker's faults."""

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


def handler_ref(handler: Handler | str) -> str:
    """How a handler is named to the worker: ``module:qualname`` (a file's path for a module that is one)."""
    if isinstance(handler, str):
        return handler
    module, name = handler.__module__, handler.__qualname__
    if "<" in name:
        raise ValueError(f"job handler {name} must be defined at module level: the worker imports it by name")
    if module == "__main__" or module.startswith("_backendlab_user_"):  # loaded from a file, not importable by name
        return f"{sys.modules[module].__file__}:{name}"
    return f"{module}:{name}"


def progress_message(done: int, total: int, stage: str = "", **extra: Any) -> dict:
    """What ``progress.json`` holds: steps done of the total, the stage, and whatever the job adds."""
    return {"done": done, "total": total, "stage": stage, **extra}


def ready_event(import_s: float) -> str:
    """A warm worker's first line on its control channel: it imported its framework in ``import_s``."""
    return json.dumps({"event": "ready", "import_s": import_s}) + "\n"


def done_event(code: int) -> str:
    """A warm worker's line after each job: its exit status (0 done, 1 failed, 2 bad input)."""
    return json.dumps({"event": "done", "code": code}) + "\n"


def job_request(handler: Handler | str, job_path: Path, env: dict[str, str]) -> str:
    """The line that gives a warm worker its next job."""
    return json.dumps({"handler": handler_ref(handler), "job": str(job_path), "env": env}) + "\n"


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log; empty when there is none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def last_error_line(log_tail: str, limit: int = 240) -> str:
    """The last Python exception in a log, on one line (Keras spreads its messages over several)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in log_tail.splitlines()]
    lines = [line for line in lines if line]
    for i in range(len(lines) - 1, -1, -1):
        head = lines[i].split(":", 1)[0]
        if re.fullmatch(r"[\w.]*(Error|Exception|Interrupt)", head):
            text = " ".join(lines[i:])
            return text if len(text) <= limit else text[: limit - 3] + "..."
    return lines[-1] if lines else ""
