"""Process lifetime: nothing backendlab starts outlives it.

A :class:`ProcessTree` starts a command in a session of its own, with a mark in its environment
that every descendant inherits, and on Linux asks the kernel to kill it when its parent dies
(``PR_SET_PDEATHSIG``). Stopping it stops every process below it and every process carrying the
mark, torchrun's ranks included (torchrun starts each in a session of its own, out of reach of
a process group). Processes are found through ``/proc``; elsewhere only the group is reached.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: ``<orchestrator pid>:<token>`` in the environment of the process a ProcessTree starts, and so
#: of every process that one starts in turn: how the orchestrator finds them all, wherever they
#: were reparented, and how each of them checks that the orchestrator still lives.
STARTED_BY = "BACKENDLAB_STARTED_BY"
_PR_SET_PDEATHSIG = 1  # from linux/prctl.h
_GONE_S = 5.0  # the longest a killed process may take to be gone


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up before any fork: a forked child must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes, prctl.restype = [ctypes.c_int, *[ctypes.c_ulong] * 4], ctypes.c_int
    return prctl


def _die_with_parent(prctl: Callable[..., int] | None) -> bool:
    """Have Linux SIGKILL this process when its parent dies; False where it cannot."""
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0


def _processes() -> dict[int, tuple[int, str]]:
    """Each process's parent and state (``Z``: a zombie) from ``/proc``; empty where there is none."""
    table: dict[int, tuple[int, str]] = {}
    try:
        pids = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return table
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # what follows "pid (command)"
        table[int(pid)] = (int(fields[1]), fields[0].decode())
    return table


def _carrying(entry: bytes, pids) -> set[int]:
    """The processes among ``pids`` whose environment holds ``entry`` (``NAME=value``)."""
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if entry in f.read().split(b"\0"):
                    found.add(pid)
        except OSError:  # gone, or not ours to read
            continue
    return found


def _descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _ancestors(pid: int, table: dict[int, tuple[int, str]]) -> list[int]:
    chain: list[int] = []
    while pid in table and pid not in chain:
        chain.append(pid)
        pid = table[pid][0]
    return chain


def _send(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: set[int], timeout: float = _GONE_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = _processes()
        if all(table.get(pid, (0, "Z"))[1] == "Z" for pid in pids):
            return
        time.sleep(0.02)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait for the block's end: a process stopped to be killed must not stay stopped."""
    held = {signal.SIGINT, signal.SIGTERM}
    mask = getattr(signal, "pthread_sigmask", None)
    previous = mask(signal.SIG_BLOCK, held) if mask else None
    try:
        yield
    finally:
        if mask:
            mask(signal.SIG_SETMASK, previous)


def die_with_orchestrator() -> None:
    """In a process backendlab started, directly or not (a torchrun rank): die with its parent.

    :class:`ProcessTree` sets this up for the process it starts; torchrun does not for its
    ranks, so each rank asks for itself here, then checks that the orchestrator is still
    among its ancestors: if not, it was orphaned before it asked, and it stops.
    """
    mark = os.environ.get(STARTED_BY, "")
    if not mark.partition(":")[0].isdigit() or not _die_with_parent(_prctl()):
        return
    orchestrator = int(mark.partition(":")[0])
    if orchestrator not in _ancestors(os.getpid(), _processes()):
        raise SystemExit(f"backendlab: the process that started this one ({orchestrator}) is gone; stopping")


class ProcessTree:
    """A command started so that nothing of it outlives backendlab.

    It runs in a session of its own (a Ctrl-C in the terminal reaches only the orchestrator,
    which decides what happens), on Linux it dies with the process that started it, and
    everything it starts inherits :data:`STARTED_BY`: :meth:`kill` finds each of them by
    the process tree and by that mark, even one in a session of its own (torchrun's ranks)
    or one whose parent already died.
    """

    def __init__(self, command: Sequence[str], *, env: dict[str, str] | None = None, **popen_kwargs: Any):
        self.mark = f"{os.getpid()}:{uuid.uuid4().hex}"
        parent, prctl = os.getpid(), _prctl()

        def die_with_parent() -> None:  # runs in the child, between fork and exec
            _die_with_parent(prctl)
            if os.getppid() != parent:  # the parent died before the child asked
                os._exit(1)

        self.proc = subprocess.Popen(
            list(command),
            env={**(os.environ if env is None else env), STARTED_BY: self.mark},
            start_new_session=True,
            preexec_fn=die_with_parent,
            **popen_kwargs,
        )

    def _members(self, table: dict[int, tuple[int, str]]) -> set[int]:
        """The live processes of the tree: the root while not reaped, all below it, all that carry the mark."""
        roots = _carrying(f"{STARTED_BY}={self.mark}".encode(), table)
        if self.proc.returncode is None:  # not reaped yet, so the pid is still its own
            roots.add(self.proc.pid)
        return {
            pid
            for pid in roots | _descendants(roots, table)
            if pid != os.getpid() and table.get(pid, (0, "Z"))[1] != "Z"
        }

    def kill(self) -> None:
        """SIGKILL the process and every process it started; return once they are gone."""
        with signals_held():
            stopped: set[int] = set()
            for _ in range(100):  # each is stopped before its children are listed: a stopped process starts none
                found = self._members(_processes()) - stopped
                if not found:
                    break
                for pid in found:
                    _send(pid, signal.SIGSTOP)
                stopped |= found
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            for pid in stopped:
                _send(pid, signal.SIGKILL)
            if self.proc.poll() is None:  # where there is no /proc to list the tree
                self.proc.kill()
            self.proc.wait()
            _wait_gone(stopped)

    def stop(self, grace_s: float) -> None:
        """Ask the process to stop (SIGTERM; torchrun passes it on to its ranks), give it ``grace_s``, kill the rest."""
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(grace_s)
        finally:
            self.kill()
