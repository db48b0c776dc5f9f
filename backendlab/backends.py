"""The one definition of the backends backendlab knows; every other table derives from it.

Design rules (after einops' ``_backends.py`` and array-api-compat):

* This module imports no framework. It finds out what is installed with
  ``importlib.util.find_spec`` and what is loaded with ``sys.modules``.
* A backend is chosen once per process, before ``import keras``, by
  ``KERAS_BACKEND``. Crossing backends means crossing processes.
* Backend-specific code lives in ``backendlab/_impl/<name>.py``; each of those
  files defines the same functions, so the rest of the package never branches
  on the backend's name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from backendlab.errors import UsageError
from backendlab.workers.ranks import launched


@dataclass(frozen=True)
class Backend:
    name: str  # the value of KERAS_BACKEND
    module: str  # the framework's import name
    distribution: str  # the framework's pip distribution, for its version
    extra: str  # backendlab's pip extra that installs it
    framework: str  # how people call it
    compiler: str  # what compiles a training step
    steps_per_execution: bool  # whether Keras allows steps_per_execution > 1
    data_parallel: str  # the backend's own engine that backendlab drives for --devices N
    # Data-parallel training with N > 1 needs one process per device, started by this
    # launcher module (torchrun); None: one process drives every device.
    launcher: str | None
    # False: Keras runs a forward pass on it but cannot train (its numpy backend). Such a
    # backend has no backendlab/_impl module; compare uses it as an independent reference.
    trainable: bool = True
    # How to ask for N virtual devices on a CPU-only host, before the framework starts:
    # (environment variable, flag with ``{devices}``), or None where it is done after import
    # (TensorFlow's logical CPUs, in _impl) or by the launcher (torchrun's processes).
    host_devices_flag: tuple[str, str] | None = None
    # The lines that set a process's intra-op and inter-op thread counts ({intra}, {inter}),
    # for tune's snippets; what the framework allows, before it starts.
    threads_snippet: str = ""
    # Whether Keras's fit compiles its whole train step as one graph (jax.jit, tf.function); where
    # not (torch.compile breaks at backward()), backendlab's whole_step_fit does, and tune tries it.
    fit_in_one_graph: bool = True

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    @property
    def framework_version(self) -> str | None:
        # tensorflow may come as tensorflow-cpu or as tensorflow; ask for both.
        for dist in dict.fromkeys((self.distribution, self.module)):
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    @property
    def install_hint(self) -> str:
        return f"pip install -c constraints.txt -e '.[{self.extra}]'"


#: Every backend Keras can run backendlab's work on, trainable or not.
ALL_BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "jax",
            "jax",
            "jax",
            "jax",
            "JAX",
            "jax.jit",
            True,
            "keras.distribution.DataParallel over a DeviceMesh",
            None,
            # XLA's flag splits the host into virtual devices; it does nothing on GPUs.
            host_devices_flag=("XLA_FLAGS", "--xla_force_host_platform_device_count={devices}"),
            threads_snippet='os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false '
            'intra_op_parallelism_threads=1"  # before JAX starts: one thread (JAX has no other count)',
        ),
        Backend(
            "tensorflow",
            "tensorflow",
            "tensorflow-cpu",
            "tensorflow",
            "TensorFlow",
            "tf.function",
            True,
            "tf.distribute.MirroredStrategy",
            None,
            threads_snippet="tf.config.threading.set_intra_op_parallelism_threads({intra})\n"
            "tf.config.threading.set_inter_op_parallelism_threads({inter})  # before TensorFlow's first op",
        ),
        Backend(
            "torch",
            "torch",
            "torch",
            "torch",
            "PyTorch",
            "eager (torch autograd)",
            False,
            "DistributedDataParallel (gloo on CPU, nccl on GPU)",
            "torch.distributed.run",
            threads_snippet="torch.set_num_threads({intra})\ntorch.set_num_interop_threads({inter})  # before any work",
            fit_in_one_graph=False,
        ),
        Backend("numpy", "numpy", "numpy", "all", "NumPy", "none", False, "none", None, trainable=False),
    )
}
#: The backends that train: the test matrix, compare's workers, bench, info.
BACKENDS: dict[str, Backend] = {n: b for n, b in ALL_BACKENDS.items() if b.trainable}
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)
#: Backends that only predict, as independent references for compare's starting predictions.
REFERENCE_BACKENDS: tuple[str, ...] = tuple(n for n, b in ALL_BACKENDS.items() if not b.trainable)


def installed_backends() -> list[Backend]:
    return [b for b in BACKENDS.values() if b.installed]


@dataclass(frozen=True)
class Wording:
    """How a command words :func:`plan`'s errors; its users (and its tests) read these exact lines.

    ``{name}``: the backend; ``{valid}``: every backend's name; ``{names}``: the names asked for,
    joined by ``separator``; ``{framework}``, ``{hint}``: the missing backend's and how to install it.
    ``twice`` None: a backend may be named twice; ``empty`` None: an empty list is not refused here.
    """

    unknown: str = "unknown backend {name!r}: valid backends are {valid}"
    twice: str | None = "backends names a backend twice: {names}"
    missing: str = "backend {name!r} is not installed: {hint}"
    empty: str | None = "backends is empty: name at least one of {valid}"
    separator: str = ", "


@dataclass(frozen=True)
class Plan:
    """Which backends a command runs, in the order asked (the first is the reference), and which it skips."""

    run: list[str]
    #: Each backend asked for that is not installed, and why it cannot run (only with ``skip_missing``).
    skipped: dict[str, str]
    #: Whether the backends were named (not the default).
    named: bool


def plan(
    requested: str | Sequence[str] | None,
    *,
    only_installed: bool = False,
    skip_missing: bool = False,
    wording: Wording = Wording(),
) -> Plan:
    """The one rule for which backends run: those ``requested``, or by default every backend
    (``only_installed``: every installed one). A name must be a backend; one not installed is
    refused, or with ``skip_missing`` skipped (and at least one must remain). Imports no framework."""
    valid = ", ".join(BACKEND_NAMES)
    named = requested is not None
    if not named:
        names = [n for n in BACKEND_NAMES if BACKENDS[n].installed or not only_installed]
        if not names:
            raise UsageError(f"no backend is installed: {BACKENDS[BACKEND_NAMES[0]].install_hint}")
    else:
        names = [requested] if isinstance(requested, str) else list(requested)
        if not names and wording.empty is not None:
            raise UsageError(wording.empty.format(valid=valid))
    skipped = {}
    for name in names:
        if name not in BACKENDS:
            raise UsageError(wording.unknown.format(name=name, valid=valid))
        backend = BACKENDS[name]
        if backend.installed:
            continue
        if not skip_missing:
            raise UsageError(wording.missing.format(name=name, framework=backend.framework, hint=backend.install_hint))
        skipped[name] = f"{backend.framework} is not installed: {backend.install_hint}"
    if wording.twice is not None and len(set(names)) != len(names):
        raise UsageError(wording.twice.format(names=wording.separator.join(names)))
    run = [n for n in names if n not in skipped]
    if skip_missing and not run:
        raise UsageError("no requested backend is installed: " + "; ".join(skipped.values()))
    return Plan(run, skipped, named)


def requested_backend_name() -> str:
    """The backend this process will use: ``KERAS_BACKEND``; else, where Keras was imported first, the one
    it chose (from ``~/.keras/keras.json``), since it is fixed now; else the first installed."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    found = installed_backends()
    return found[0].name if found else BACKEND_NAMES[0]


def check_backend_variable() -> None:
    """``KERAS_BACKEND``, where set, names a backend backendlab supports. Commands that run every backend
    in workers of their own (compare, bench, tune, check-layer) do not use it, but a value that is no
    backend is a mistake all the same, and told as train tells it. Imports nothing."""
    name = os.environ.get("KERAS_BACKEND")
    if name and name not in BACKENDS:
        raise UsageError(
            f"KERAS_BACKEND={name!r} is not a backend backendlab supports: "
            f"set KERAS_BACKEND to one of {', '.join(BACKEND_NAMES)}"
        )


def ensure_backend() -> Backend:
    """Check the requested backend is known and installed, and fix it for this process.

    Must run before ``import keras``: it sets ``KERAS_BACKEND`` when it was unset, so
    Keras and backendlab agree on what runs.
    """
    check_backend_variable()
    name = requested_backend_name()
    backend = BACKENDS[name]
    if not backend.installed:
        raise UsageError(
            f"KERAS_BACKEND={name!r} needs {backend.framework}, which is not installed: {backend.install_hint}"
        )
    os.environ["KERAS_BACKEND"] = name
    return backend


def impl(backend: Backend | None = None) -> ModuleType:
    """The backend-specific module ``backendlab._impl.<name>`` for the active backend."""
    backend = backend or ensure_backend()
    return importlib.import_module(f"backendlab._impl.{backend.name}")


def launch_command(backend: Backend, devices: int, module: str, args: list[str], processes: int = 1) -> list[str]:
    """The command that runs ``python -m module args`` on ``devices`` devices of ``backend``, in ``processes``
    processes that behave like as many hosts (:mod:`backendlab.workers.launch`)."""
    if processes > 1 and not launched():
        return [sys.executable, "-m", "backendlab.workers.launch", str(processes), backend.name, module, *args]
    if devices > 1 and backend.launcher and not launched():
        return [
            sys.executable,
            "-m",
            backend.launcher,
            "--standalone",
            f"--nproc_per_node={devices}",
            "-m",
            module,
            *args,
        ]
    return [sys.executable, "-m", module, *args]


def request_devices(backend: Backend, devices: int) -> None:
    """Ask, before ``backend``'s framework is imported, for ``devices`` virtual host devices where it can."""
    if devices < 2 or backend.host_devices_flag is None or backend.module in sys.modules:
        return
    variable, flag = backend.host_devices_flag
    current = os.environ.get(variable, "")
    if flag.split("=")[0] not in current:
        os.environ[variable] = f"{current} {flag.format(devices=devices)}".strip()


def check_device_count(devices: int, accelerators: int, kind: str = "GPU") -> None:
    """Refuse more devices than the machine has: its accelerators, or on a CPU-only machine its cores.

    Virtual CPU devices (JAX's host devices, TensorFlow's logical CPUs, gloo processes)
    could be made in any number, but each needs a core of its own to be a device at all.
    """
    available = accelerators or (os.cpu_count() or 1)
    if devices > available:
        have = (
            f"{accelerators} {kind}s"
            if accelerators
            else f"no {kind} and {available} CPU cores (at most one virtual device per core)"
        )
        raise UsageError(f"asked for {devices} devices but this machine has {have}: use --devices {available} or fewer")
