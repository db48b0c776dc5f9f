"""No process outlives backendlab: a timeout, Ctrl-C, SIGTERM or a killed orchestrator ends all it started.

Each run carries a fresh ``BACKENDLAB_TEST_RUN_ID`` in its environment, which every process
it starts inherits (torchrun's ranks too, each in a session of its own): the tests find them
all by it in ``/proc``, note them while the run goes on, and after it require none alive.
Single-backend tests run on the session's backend, with two devices where that backend
starts one process per device (torch: torchrun and two ranks).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import QUIET_ENV, ctrl_c_as_in_a_terminal

from backendlab.backends import BACKENDS

FAULTY = "tests/fixtures/faulty_models.py:build"
RUN_ID = "BACKENDLAB_TEST_RUN_ID"
#: How long the processes of a SIGKILLed orchestrator may take to die with it.
DIE_WITH_PARENT_S = 5.0
#: The longest a run may take to get to training: two torch ranks on two busy cores are slow to start.
START_S = 120

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc (Linux)")


@dataclass(frozen=True)
class Seen:
    pid: int
    command: str
    local_rank: str | None  # set in the ranks torchrun starts


def _live(run_id: str) -> dict[int, Seen]:
    """The processes, zombies aside, that carry ``run_id`` in their environment."""
    entry = f"{RUN_ID}={run_id}".encode()
    found = {}
    for path in Path("/proc").iterdir():
        if not path.name.isdigit():
            continue
        try:
            environ = (path / "environ").read_bytes().split(b"\0")
            if entry not in environ or (path / "stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z":
                continue
            command = (path / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        env = dict(e.decode(errors="replace").split("=", 1) for e in environ if b"=" in e)
        found[int(path.name)] = Seen(int(path.name), command, env.get("LOCAL_RANK"))
    return found


def _devices(backend: str) -> str:
    """Two where the backend starts a process per device (torchrun), so its ranks are tested too."""
    return "2" if BACKENDS[backend].launcher else "1"


class Run:
    """``backendlab ARGS`` started in the background; every process of it noted as it goes."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None):
        self.id = uuid.uuid4().hex
        self.log = tmp_path / "backendlab.log"
        self.seen: dict[int, Seen] = {}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "backendlab", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **QUIET_ENV, **(env or {}), RUN_ID: self.id},
                preexec_fn=ctrl_c_as_in_a_terminal,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def live(self) -> dict[int, Seen]:
        found = _live(self.id)
        self.seen.update(found)
        return found

    def workers(self) -> dict[int, Seen]:
        """What the run started and is still alive: everything but backendlab's own process."""
        return {pid: s for pid, s in self.live().items() if pid != self.proc.pid}

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = START_S) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.live()
            assert self.proc.poll() is None, f"ended ({self.proc.returncode}) before {what}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout}s:\n{self.output()}"
            time.sleep(0.1)
        self.live()

    def killed(self) -> None:
        """SIGKILL backendlab, which cannot clean up: what it started must die with it, in a few seconds."""
        self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + DIE_WITH_PARENT_S
        while self.live() and time.monotonic() < deadline:
            time.sleep(0.1)

    def finish(self, timeout: float = 60) -> int:
        """Wait for backendlab to end, still noting what it started; its exit status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            self.live()
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"backendlab did not end in {timeout}s:\n{self.output()}")
            time.sleep(0.1)
        return self.proc.returncode

    def cleanup(self) -> None:
        """After the test, passed or failed: leave nothing running for the next one."""
        for pid in _live(self.id):  # backendlab's own process carries the mark too
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


@pytest.fixture
def start(tmp_path):
    runs: list[Run] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Run:
        runs.append(Run(tmp_path, *args, env=env))
        return runs[-1]

    yield start
    for run in runs:
        run.cleanup()


def _training(progress: Path) -> Callable[[], bool]:
    """Whether a compare worker reported a finished training step."""

    def training() -> bool:
        try:
            report = json.loads(progress.read_text())
        except (OSError, ValueError):
            return False
        return report.get("stage") == "training" and report.get("done", 0) >= 1

    return training


def _check_workers(run: Run, backend: str) -> None:
    """The run did start what the test is about: a worker, or torchrun and one rank per device."""
    workers = [s for pid, s in run.seen.items() if pid != run.proc.pid]
    assert workers, f"no worker was seen:\n{run.output()}"
    if BACKENDS[backend].launcher:
        ranks = {s.local_rank for s in workers if s.local_rank is not None}
        assert ranks == {"0", "1"}, (workers, run.output())


def _assert_none_left(run: Run) -> None:
    left = run.live()
    assert not left, f"still running after backendlab ended: {list(left.values())}\n{run.output()}"


def _compare(start, backend: str, out: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """``compare`` on one backend, no portability pass: one worker, or torchrun and its ranks."""
    return start(
        "compare",
        *("--backends", backend, "--devices", _devices(backend), "--no-portability", "--out", str(out)),
        *args,
        env=env,
    )


def test_a_worker_past_its_timeout_is_killed_with_all_it_started(backend, start, tmp_path):
    out = tmp_path / "run"
    faults = {"BACKENDLAB_TEST_FAULTS": f"{backend}:hang"}  # the first training step never ends
    run = _compare(start, backend, out, "--model", FAULTY, "--epochs", "1", "--timeout", "15", env=faults)
    run.wait_for("worker", lambda: bool(run.workers()))
    assert run.finish() == 1, run.output()
    _assert_none_left(run)
    _check_workers(run, backend)
    report = json.loads((out / "report.json").read_text())["backends"][backend]
    assert report["status"] == "timeout" and report["message"] == "no result after the 15s timeout; killed"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_compare_stopped_by_a_signal_leaves_no_process(sig, backend, start, tmp_path):
    out = tmp_path / "run"
    run = _compare(start, backend, out, "--epochs", "1000")
    run.wait_for("training step", _training(out / backend / "progress.json"))
    run.proc.send_signal(sig)
    assert run.finish() == 130, run.output()
    _assert_none_left(run)
    _check_workers(run, backend)
    assert "backendlab: interrupted" in run.output()
    assert json.loads((out / "report.json").read_text())["verdict"] == "incomplete"


def test_compare_killed_outright_takes_its_workers_with_it(backend, start, tmp_path):
    out = tmp_path / "run"
    run = _compare(start, backend, out, "--epochs", "1000")
    run.wait_for("training step", _training(out / backend / "progress.json"))
    run.killed()
    _assert_none_left(run)
    _check_workers(run, backend)


needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed: torchrun starts the ranks tested here"
)


@needs_torch
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_train_on_two_torch_ranks_stopped_by_a_signal_leaves_no_rank(sig, start, tmp_path):
    run = start("train", "--devices", "2", "--epochs", "200", env={"KERAS_BACKEND": "torch"})

    def ranks_training() -> bool:
        # Both ranks joined the process group (sockets to torchrun's store and to each other): training starts.
        ranks = [s for s in run.workers().values() if s.local_rank is not None]
        return len(ranks) == 2 and all(_sockets(s.pid) >= 2 for s in ranks)

    run.wait_for("two training ranks", ranks_training)
    time.sleep(1)
    if sig == signal.SIGKILL:
        run.killed()
    else:
        run.proc.send_signal(sig)
        assert run.finish() == 130, run.output()
        assert run.output().count("backendlab: interrupted") == 1, run.output()
    _assert_none_left(run)
    _check_workers(run, "torch")


def _sockets(pid: int) -> int:
    try:
        return sum(os.readlink(fd).startswith("socket:") for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0
