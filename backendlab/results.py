"""Results as small dataclasses that serialize to JSON, and atomic file writes.

Tables, reports and plots are drawn from these objects, never from live state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backendlab.runspec import RunSpec


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    if hasattr(obj, "item") and callable(obj.item):  # NumPy scalars
        return to_jsonable(obj.item())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=True) + "\n")


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
class TrainResult:
    info: BackendInfo
    config: RunSpec  # as resolved: data, optimizer and learning rate filled in
    history: dict[str, list[float]]  # per-epoch, keyed by metric name
    step_losses: list[float]  # the loss of every training batch, in order
    # What Keras logs after every batch: the epoch's running mean, weighted by batch size.
    # Exact as reported; step_losses are recovered from it by differences.
    step_running_loss: list[float]
    test: dict[str, float]  # model.evaluate on the test split
    train_time_s: float  # fit or the custom loop only, not imports or building
    num_params: int
    saved_model: str | None = None
    stochastic_layers: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return self.info.backend

    def to_dict(self) -> dict:
        d = to_jsonable(self)
        d["backend"] = self.backend
        return d
