"""The worker's side: jobs run in a process of one backend (``KERAS_BACKEND`` is set for it).

``python -m backendlab.workers FOLDER/job.json HANDLER`` runs one job in a fresh process:
nothing is imported before its handler runs (a handler may set thread counts before its framework
starts), and under torchrun or ``--processes`` every rank runs it. ``python -m backendlab.workers``
alone is a warm worker: it imports the framework once, then runs the jobs it is given on stdin until
stdin closes, and after each puts back what the job changed (:class:`Baseline`), so that no job
sees what an earlier one left. Either way a job's handler gets its payload, its folder and a
:class:`Progress`; its result goes to ``result.json`` (:mod:`backendlab.workers.protocol`).

No process a worker starts outlives it (:class:`~backendlab.workers.processes.ProcessTree`), and
each worker dies with the orchestrator (:func:`~backendlab.workers.processes.die_with_orchestrator`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import sysconfig
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backendlab.backends import ALL_BACKENDS
from backendlab.errors import UsageError
from backendlab.results import read_json, write_json
from backendlab.workers.processes import die_with_orchestrator
from backendlab.workers.protocol import (
    CONTROL_FD,
    LOG,
    PROGRESS,
    RESULT,
    USAGE_PREFIX,
    Handler,
    done_event,
    progress_message,
    ready_event,
)
from backendlab.workers.ranks import is_main_process, leave_now, note_rank, one_of_processes


class Progress:
    """Written by a worker as it goes; throttled so it costs nothing measurable."""

    def __init__(self, workdir: Path, every_s: float = 0.25):
        self.path, self.every_s, self.last = workdir / PROGRESS, every_s, 0.0

    def __call__(self, done: int, total: int, stage: str = "", force: bool = False, **extra: Any) -> None:
        now = time.perf_counter()
        if is_main_process() and (force or now - self.last >= self.every_s):
            write_json(self.path, progress_message(done, total, stage, **extra))
            self.last = now


def resolve_handler(ref: str) -> Handler:
    """The handler :func:`~backendlab.workers.protocol.handler_ref` named: imported by module and name,
    or, for ``path/to/file.py:function``, loaded from that file as a user's file is."""
    target, _, name = ref.rpartition(":")
    if target.endswith(".py"):
        from backendlab.specs import load_callable

        return load_callable(ref, "job handler")
    try:
        found: Any = importlib.import_module(target)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(f"job handler {ref!r} cannot be found: {exc}") from exc
    return found


def run_job(handler: Handler | str, job_path: Path) -> int:
    """Run one job and write its result: 0 done, 2 bad input (one line on stderr), 1 failed (a traceback)."""
    workdir = job_path.parent
    payload = read_json(job_path)
    try:
        if isinstance(handler, str):
            handler = resolve_handler(handler)
        result = handler(payload, workdir, Progress(workdir))
    except UsageError as exc:  # bad input, not a fault of the backend: one line, exit 2
        print(f"{USAGE_PREFIX}{exc}", file=sys.stderr, flush=True)
        return 2
    except Exception:
        traceback.print_exc()
        return 1
    if is_main_process():  # under torchrun every rank computes the same result; one writes it
        write_json(workdir / RESULT, result)
    return 0


def one_job(handler: Handler | str, job_path: Path) -> int:
    """A fresh worker (or one rank of several): run the job, then end."""
    die_with_orchestrator()
    note_rank()
    code = run_job(handler, job_path)
    if code and one_of_processes():  # one of --processes: do not wait for the others
        leave_now(code)
    return code


def serve() -> int:
    """A warm worker: import the framework once, then run jobs until stdin closes.

    Each stdin line is a :func:`~backendlab.workers.protocol.job_request`. The job's output goes to
    its folder's ``worker.log`` and its result to ``result.json``, as a fresh worker's would; after
    each job a :func:`~backendlab.workers.protocol.done_event` goes to the control channel, and
    :class:`Baseline` puts back the state the job changed.
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
    baseline = Baseline.take()
    control.write(ready_event(import_s))
    saved_out, saved_err = os.dup(1), os.dup(2)
    for line in jobs:
        request = json.loads(line)
        job_path = Path(request["job"])
        sys.stdout.flush(), sys.stderr.flush()
        with open(job_path.parent / LOG, "ab") as log:
            os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        os.environ.update(request.get("env") or {})
        try:
            code = run_job(request["handler"], job_path)
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved_out, 1), os.dup2(saved_err, 2)
        baseline.restore()
        control.write(done_event(code))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        job_path, handler = args
        return one_job(handler, Path(job_path))
    return serve()


# --- what a warm worker puts back between jobs ---------------------------------------------
#
# Keras's global state (``clear_session``: layer name counters, the global seed generator, TF's
# graph); the configuration (floatx, epsilon, image data format, the dtype policy, the
# distribution); the registered custom objects, and the modules a job imported from outside the
# installed packages (users' model and data files), so a class registered by one job is unknown
# to the next; the random seeds (Python's, NumPy's, the framework's and Keras's own); torch.compile's
# caches; the environment variables, ``sys.path`` and the working directory.

#: Where installed code lives: modules from there stay imported between jobs (re-importing a framework breaks it).
_LIBRARY = tuple(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
#: The seed every job starts from when it sets none of its own (each backendlab job sets its own).
RESET_SEED = 0


def _user_module(module) -> bool:
    """A module a job brought in from a user's file or package, not from the installed libraries or backendlab."""
    path = getattr(module, "__file__", None)
    name = getattr(module, "__name__", "")
    if name.startswith("_backendlab_user_"):
        return True
    if not path or name == "backendlab" or name.startswith("backendlab."):
        return False
    return not os.path.abspath(path).startswith(_LIBRARY)


def _registry():
    """Keras's registries of custom objects: the public dict and, where this Keras has it, the name map."""
    import keras

    objects = keras.saving.get_custom_objects()  # documented as a live reference to the global dict
    try:
        from keras.src.saving import object_registration
    except ImportError:  # a Keras that moved it: the public dict is the one that matters for loading
        return [objects]
    return [objects, getattr(object_registration, "GLOBAL_CUSTOM_NAMES", {})]


@dataclass
class Baseline:
    config: dict
    registries: list[dict]
    modules: set[str]
    path: list[str]
    environ: dict[str, str]
    cwd: str
    distribution: object = None

    @classmethod
    def take(cls) -> Baseline:
        """Keras's state as it is now: call it once the framework is imported (and warmed up)."""
        import keras

        config = {
            "floatx": keras.config.floatx(),
            "epsilon": keras.config.epsilon(),
            "image_data_format": keras.config.image_data_format(),
            "dtype_policy": keras.config.dtype_policy(),
        }
        from backendlab.training.keras_fixes import set_random_seed

        set_random_seed(RESET_SEED)  # the first job starts as every later one will
        return cls(
            config=config,
            registries=[dict(r) for r in _registry()],
            modules=set(sys.modules),
            path=list(sys.path),
            environ=dict(os.environ),
            cwd=os.getcwd(),
            distribution=keras.distribution.distribution() if hasattr(keras, "distribution") else None,
        )

    def restore(self) -> None:
        import keras

        from backendlab.training.keras_fixes import set_random_seed

        os.chdir(self.cwd)
        sys.path[:] = self.path
        os.environ.clear()
        os.environ.update(self.environ)
        keras.backend.clear_session()
        keras.config.set_floatx(self.config["floatx"])
        keras.config.set_epsilon(self.config["epsilon"])
        keras.config.set_image_data_format(self.config["image_data_format"])
        keras.config.set_dtype_policy(self.config["dtype_policy"])
        if hasattr(keras, "distribution"):
            keras.distribution.set_distribution(self.distribution)
        for live, saved in zip(_registry(), self.registries, strict=True):
            live.clear()
            live.update(saved)
        for name in set(sys.modules) - self.modules:
            if _user_module(sys.modules.get(name)):
                del sys.modules[name]
        if "torch._dynamo" in sys.modules:
            sys.modules["torch._dynamo"].reset()
        set_random_seed(RESET_SEED)
