"""Results as small dataclasses that serialize to JSON, and atomic file writes.

Tables, reports and plots are drawn from these objects, never from live state.

Every JSON file backendlab writes is strict JSON (RFC 8259), which has no NaN or infinity:
a NaN, ``inf`` or ``-inf`` is written as ``null``. Where training went non-finite, the
result says so in words and in its ``nonfinite`` record (step, quantity, ``"nan"``/``"inf"``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backendlab import display
from backendlab.errors import UsageError
from backendlab.runspec import RunSpec


def check_writable(path: str | os.PathLike, flag: str, *, folder: bool = False) -> None:
    """Fail now, before any work, if ``path`` (a file, or with ``folder`` a folder) cannot be written.

    Creates nothing: the path itself, or else its nearest existing parent, is examined. A
    path under a regular file (``notes.txt/out``) cannot be written even by root.
    """
    path = Path(path)
    where = f"{flag} {str(path)!r} cannot be written"
    if path.exists():
        if folder and not path.is_dir():
            raise UsageError(f"{where}: it is a file, not a folder")
        if not folder and path.is_dir():
            raise UsageError(f"{where}: it is a folder")
        parent = path if folder else path.parent
    else:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"{where}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{where}: no permission to write in {str(parent)!r}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes it 0600; a result file is as readable as any other the user writes (0644 under umask 022).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@functools.cache
def _umask() -> int:
    """The process's umask, read once: reading it means setting it, which must not race the threads a
    framework starts later."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unused_folder(path: str | os.PathLike) -> Path:
    """``path`` if it is missing or empty, else the first of ``path-2``, ``path-3``, ... that is: a run never
    mixes its files with an earlier run's, nor overwrites them."""
    path = Path(path)
    candidate, n = path, 1
    while candidate.is_dir() and any(candidate.iterdir()):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


#: What --help says of a result folder that is already there.
NUMBERED_HELP = "; if DIR holds files already, they are kept and the results go to DIR-2, DIR-3, ..."


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):  # NaN and infinity are not JSON
        return None
    if hasattr(obj, "item") and callable(obj.item):  # NumPy scalars
        return to_jsonable(obj.item())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Strict JSON: NaN and infinity as ``null`` (a strict reader rejects ``NaN`` and ``Infinity``)."""
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


@dataclass
class BackendInfo:
    backend: str
    framework: str
    framework_version: str | None
    keras_version: str
    devices: list[str]
    python_version: str

    @classmethod
    def from_dict(cls, d: dict) -> BackendInfo:
        return cls(**d)


@dataclass
class NonFinite:
    """The first NaN or infinity a training run produced: when, and in what."""

    step: int  # 1-based, counted from the first step of this run
    quantity: str  # loss | metric | weights
    name: str  # as Keras logs it ("loss", "amount_loss", "amount_mae") or the weight's path ("dense/kernel")
    value: str  # nan | inf | -inf

    @property
    def message(self) -> str:
        if self.quantity == "loss":
            part = "" if self.name == "loss" else f" (in {self.name!r})"
            return f"training loss became {self.value} at step {self.step}{part}"
        if self.quantity == "metric":
            return f"training metric {self.name!r} became {self.value} at step {self.step}"
        # Weights are looked at once an epoch, after its last step: "by", not "at".
        return f"weight {self.name!r} became {self.value} by step {self.step} (weights are checked after each epoch)"

    @classmethod
    def from_dict(cls, d: dict | None) -> NonFinite | None:
        return None if d is None else cls(**d)


@dataclass
class TrainResult:
    info: BackendInfo
    config: RunSpec  # as resolved: data, optimizer and learning rate filled in
    history: dict[str, list[float]]  # per-epoch, keyed by metric name
    step_losses: list[float]  # the loss of every training batch, in order, each its own
    # What Keras logs after every batch: the epoch's running mean, weighted by batch size.
    step_running_loss: list[float]
    test: dict[str, float]  # model.evaluate on the test split
    train_time_s: float  # fit or the custom loop only, not imports or building
    num_params: int
    saved_model: str | None = None
    stochastic_layers: list[str] = field(default_factory=list)
    # Of stochastic_layers, those that draw outside Keras's random ops (observed under --random portable).
    stochastic_outside: list[str] = field(default_factory=list)
    # The checksum of the starting weights: with --init portable, the same on every backend.
    start_checksum: str | None = None
    start_note: str | None = None  # one line naming variables that kept their backend's own initializer
    # The start's variable paths by what it did with each (init.PortableStart.variables): drawn portably,
    # kept as the model's build left them, or its backend's own (fallback); all empty where it drew nothing.
    start_variables: dict[str, list[str]] = field(default_factory=dict)
    # Set when training stopped at a NaN or inf: history then holds the complete epochs, step_losses
    # every step up to and including that one, test nothing.
    nonfinite: NonFinite | None = None
    # What the train split was (arrays, tf.data, DataLoader, PyDataset, generator), and a checksum of
    # the inputs and labels fed to every training step (backendlab.pipelines.batch_checksum).
    input_kind: str = "arrays"
    batch_checksums: list[str] = field(default_factory=list)
    # The time the steps waited for their batches (the pipeline's next(), to NumPy), within train_time_s.
    input_wait_s: float = 0.0
    # A pipeline read twice before training (two calls of the data function): the first step where it differed.
    repeat_differs_at: int | None = None
    # The splits whose sample weights were used: "train" (fed to every step, and in its checksum), "test" (evaluate).
    sample_weights: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return self.info.backend

    def __repr__(self) -> str:
        return display.text(self, "backendlab.cli:train_renderables")

    def _repr_html_(self) -> str:
        return display.html(self, "backendlab.cli:train_renderables")

    def to_dict(self) -> dict:
        d = to_jsonable(self)
        d["backend"] = self.backend
        return d
