"""Which process this is, in a run of several: the one place that reads the rank environment.

Several processes train one model under torchrun (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) or
under ``--processes N`` (:mod:`backendlab.workers.launch` sets :data:`PROCESS_ID`,
:data:`PROCESSES` and :data:`ADDRESSES`; on real hosts the user does). Imports nothing heavier
than ``os`` and ``json``: the per-backend ``_impl`` modules import it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

#: Which of the processes this one is (0 .. N-1), how many there are, and ``host:port`` of each, comma-separated.
PROCESS_ID, PROCESSES, ADDRESSES = "BACKENDLAB_PROCESS_ID", "BACKENDLAB_PROCESSES", "BACKENDLAB_ADDRESSES"
#: Where a process started under a launcher (torchrun) that numbers the ranks itself writes its rank.
RANK_FILE = "BACKENDLAB_RANK_FILE"
#: What torchrun sets in each rank.
RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE = "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"
#: How TensorFlow's ``MultiWorkerMirroredStrategy`` learns the cluster.
TF_CONFIG = "TF_CONFIG"


def process_index() -> int:
    """This process's number among those that train together: torchrun's rank, or ``--processes``'s; 0 alone."""
    return int(os.environ.get(RANK, os.environ.get(PROCESS_ID, "0")))


def is_main_process() -> bool:
    """False in the ranks > 0 of a multi-process run (torchrun's, or ``--processes``): they train but write nothing."""
    return process_index() == 0


def launched() -> bool:
    """Whether this process was started by a launcher: torchrun, or backendlab's for ``--processes``."""
    return (LOCAL_RANK in os.environ and WORLD_SIZE in os.environ) or one_of_processes()


def one_of_processes() -> bool:
    """Whether this process is one of ``--processes N`` (or of several real hosts)."""
    return PROCESS_ID in os.environ


def local_rank() -> int:
    """This process's device on its host under torchrun; 0 otherwise."""
    return int(os.environ.get(LOCAL_RANK, 0))


def under_torchrun() -> bool:
    """Whether torchrun started this process (it knows how many ranks there are)."""
    return WORLD_SIZE in os.environ


def local_world_size(default: int) -> int:
    """How many ranks torchrun started on this host; ``default`` when it started none."""
    return int(os.environ.get(LOCAL_WORLD_SIZE, default))


def process_place(processes: int) -> tuple[int, list[str]]:
    """This process's number and every process's ``host:port``, from the launcher (or, on real hosts, the user)."""
    from backendlab.errors import UsageError

    addresses = [a for a in os.environ.get(ADDRESSES, "").split(",") if a]
    rank = os.environ.get(PROCESS_ID, "")
    if len(addresses) != processes or not rank.isdigit() or int(rank) >= processes:
        raise UsageError(
            f"--processes {processes} needs {PROCESS_ID} (0 to {processes - 1}) and {ADDRESSES} "
            f"({processes} host:port, the first the coordinator's) in each process; backendlab's command line sets them"
        )
    return int(rank), addresses


def has_tf_config() -> bool:
    """Whether ``TF_CONFIG`` describes a cluster for TensorFlow to join."""
    return TF_CONFIG in os.environ


def set_tf_config(addresses: list[str], rank: int) -> None:
    """``TF_CONFIG`` for worker ``rank`` of a cluster of workers at ``addresses``."""
    os.environ[TF_CONFIG] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}})


def note_rank() -> None:
    """In a process torchrun started for ``--processes``: tell the launcher which rank it got."""
    path = os.environ.get(RANK_FILE)
    if path and RANK in os.environ:
        Path(path).write_text(os.environ[RANK])


def leave_now(code: int) -> None:
    """End a process of ``--processes`` that failed, now: JAX's exit would first wait, at a barrier, for
    the other processes, which wait in a collective for this one."""
    path = os.environ.get(RANK_FILE)
    if path:  # when it failed: what fails in the others because it left comes later (see launch)
        Path(f"{path}.failed").write_text(repr(time.time()))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
