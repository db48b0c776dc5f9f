"""``--processes N``: N processes on this machine that behave like N hosts, and the launcher that watches them.

``python -m backendlab.workers.launch N BACKEND MODULE ARGS...`` starts N copies of ``python -m MODULE ARGS``
(torch: N ``torchrun --nnodes N`` agents with a c10d rendezvous, one rank each), each knowing its
place from the environment (:mod:`~backendlab.workers.ranks`: ``PROCESS_ID``, ``PROCESSES``, ``ADDRESSES``: one free
localhost port per process, the first the coordinator's). Each process joins the others through its
backend's own engine (``_impl.<backend>.join_processes``) and reads only its own share of every
global batch.

The launcher imports no framework. It watches every process: the first that ends with a failure
ends the run at once. The others, likely blocked in a collective waiting for the one that died,
are killed with all they started, and the launcher's last line names that process and its error:
``backendlab: error: process 1 of 2 failed: RuntimeError: ...``. Each process dies with the
launcher (:class:`~backendlab.workers.processes.ProcessTree`), so nothing outlives it.

On several real hosts the same variables are set by hand on each host (see the README); only the
addresses change.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from backendlab.backends import ALL_BACKENDS, Backend
from backendlab.workers.processes import ProcessTree, die_with_orchestrator, signals_held
from backendlab.workers.protocol import USAGE_PREFIX, last_error_line
from backendlab.workers.ranks import ADDRESSES, PROCESS_ID, PROCESSES, RANK_FILE

#: How long the other processes have to end on their own after one ended with a usage error (exit 2).
USAGE_GRACE_S = 10.0
#: How long, after one process failed, the launcher listens for the others before it kills them.
FAILURE_GRACE_S = 2.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on localhost now (held open together, so no two are the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def process_commands(backend: Backend, processes: int, module: str, args: list[str]) -> tuple[list[str], list[dict]]:
    """The command each process runs and its environment, on localhost ports free now."""
    ports = free_ports(processes)
    addresses = ",".join(f"localhost:{port}" for port in ports)
    base = {PROCESSES: str(processes), ADDRESSES: addresses}
    envs = [{**base, PROCESS_ID: str(i)} for i in range(processes)]
    if backend.launcher:  # torchrun: one agent per simulated host, the ranks met through c10d on the first port
        command = [
            sys.executable,
            "-m",
            backend.launcher,
            f"--nnodes={processes}",
            "--nproc-per-node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=localhost:{ports[0]}",
            f"--rdzv-id={uuid.uuid4().hex}",
            "--max-restarts=0",
            "-m",
            module,
            *args,
        ]
    else:
        command = [sys.executable, "-m", module, *args]
    return command, envs


def _error_line(lines: list[str]) -> str:
    """The process's own last error; torchrun's report of its failed rank (``ChildFailedError``) is left out."""
    lines = [line for line in lines if not re.match(r"[EWI]\d{4} ", line)]  # torchrun's log lines
    report = next((i for i, line in enumerate(lines) if "ChildFailedError" in line), None)
    if report is not None:  # cut at the traceback that ends in torchrun's report
        tracebacks = [i for i, line in enumerate(lines[:report]) if line.startswith("Traceback")]
        lines = lines[: tracebacks[-1] if tracebacks else report]
    return last_error_line("\n".join(lines[-40:]))


class _Process:
    """One of the processes: its tree, its rank, its stderr read line by line (kept, and passed on)."""

    def __init__(self, slot: int, command: list[str], env: dict, folder: Path, ended: queue.Queue):
        self.slot, self.rank_file = slot, folder / f"rank-{slot}"
        self.lines: deque[str] = deque(maxlen=200)
        self.tree = ProcessTree(
            command,
            env={**os.environ, **env, RANK_FILE: str(self.rank_file)},
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.reader = threading.Thread(target=self._read, args=(ended,), daemon=True)
        self.reader.start()

    def _read(self, ended: queue.Queue) -> None:
        for raw in self.tree.proc.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line.rstrip("\n"))
            sys.stderr.write(line)
            sys.stderr.flush()
        code = self.tree.proc.wait()
        self.ended_at = time.time()
        ended.put((code, self.slot))

    @property
    def failed_at(self) -> float:
        """When it failed: as it noted itself, or else (killed, say) when it was seen to end."""
        try:
            return float(Path(f"{self.rank_file}.failed").read_text())
        except (OSError, ValueError):
            return self.ended_at

    @property
    def rank(self) -> int:
        try:
            return int(self.rank_file.read_text())
        except (OSError, ValueError):
            return self.slot

    @property
    def noted(self) -> bool:
        """Whether it noted its own failure; one killed (or crashed in native code) could not."""
        return Path(f"{self.rank_file}.failed").exists()

    def status(self, code: int) -> int:
        """Its exit status: under torchrun, the one its agent reports for its rank (torchrun itself exits 1)."""
        reported = [m for line in self.lines if (m := re.search(r"exitcode\s*:\s*(-?\d+)", line))]
        return int(reported[-1].group(1)) if reported else code

    def found_bad_input(self, code: int) -> bool:
        """Whether it ended for bad input: exit status 2, with its one line said."""
        return self.status(code) == 2 and any(line.startswith(USAGE_PREFIX) for line in self.lines)

    def failure(self, code: int, processes: int) -> str:
        what = f"process {self.rank} of {processes}"
        if code < 0:
            return f"{what} was killed by signal {signal.Signals(-code).name}"
        usage = [line for line in self.lines if line.startswith(USAGE_PREFIX)]
        if code == 2 and usage:
            return usage[-1][len(USAGE_PREFIX) :]
        return f"{what} failed (exit status {code}): {_error_line(list(self.lines)) or 'no error message'}"


def cause(failures: dict[int, int], started: Sequence[_Process]) -> int:
    """Of the processes that failed (slot -> exit code), the one whose failure ended the others.

    Bad input (exit 2, said in its line) is found before training, so it is never a peer's doing: it is
    the cause, and one killed meanwhile is not (JAX's coordination service aborts the other processes
    when the first one leaves). Otherwise one that could not note its failure (killed) is taken to be
    the cause of the others', and among the rest the one that failed first.
    """
    return min(
        failures,
        key=lambda s: (not started[s].found_bad_input(failures[s]), started[s].noted, started[s].failed_at),
    )


def launch(backend: Backend, processes: int, module: str, args: list[str]) -> int:
    """Run the N processes to their end; the first to fail ends them all. The exit status: 0, or the failure's."""
    command, envs = process_commands(backend, processes, module, args)
    ended: queue.Queue = queue.Queue()
    with tempfile.TemporaryDirectory(prefix="backendlab-launch-") as folder:
        started: list[_Process] = []
        try:
            for slot, env in enumerate(envs):
                started.append(_Process(slot, command, env, Path(folder), ended))
            done = 0
            while done < processes:
                code, slot = ended.get()
                done += 1
                if code == 0:
                    continue
                # A process that fails takes the others with it (a collective's peer is gone), and under
                # torchrun each is reported by its agent, late: the first to end need not be the first
                # to fail. Those that end within a moment are heard; the one that failed first is named.
                failures = {slot: code}
                deadline = time.monotonic() + (USAGE_GRACE_S if code == 2 else FAILURE_GRACE_S)
                while done < processes:
                    try:
                        other_code, other = ended.get(timeout=max(deadline - time.monotonic(), 0.01))
                    except queue.Empty:
                        break
                    done += 1
                    if other_code:
                        failures[other] = other_code
                first = cause(failures, started)
                code = started[first].status(failures[first])
                message = started[first].failure(code, processes)
                _kill(started)
                said = any(line.startswith(USAGE_PREFIX) for p in started for line in p.lines)
                if not (code == 2 and said):  # bad input is told by the process that found it
                    sys.stderr.write(f"{USAGE_PREFIX}{message}\n")
                return code if code > 0 else 1
            return 0
        finally:
            _kill(started)


def _kill(started: list[_Process]) -> None:
    with signals_held():
        for process in started:
            process.tree.kill()
    for process in started:
        process.reader.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    die_with_orchestrator()
    processes, backend, module, *args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        return launch(ALL_BACKENDS[backend], int(processes), module, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
