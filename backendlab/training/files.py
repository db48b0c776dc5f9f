"""Saved models: ``.keras`` files written whole, loaded on any backend, carrying the run that trained them."""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from backendlab.errors import UsageError, one_line
from backendlab.results import check_writable
from backendlab.runspec import RunSpec
from backendlab.specs import user_objects
from backendlab.training.keras_fixes import avoid_needless_tensorflow

if TYPE_CHECKING:
    from backendlab.training.preparation import Prepared


def check_save_path(path: str | os.PathLike) -> None:
    """Before training: ``--save`` must name a ``.keras`` file in a place that can be written."""
    if Path(path).suffix != ".keras":
        raise UsageError(f"--save needs a path ending in .keras, got {str(path)!r}")
    check_writable(path, "--save")


def check_resume_path(path: str | os.PathLike) -> None:
    """Before any framework is imported: ``--resume`` names a ``.keras`` file that exists and is a Keras archive."""
    if not Path(path).exists():
        raise UsageError(f"--resume {str(path)!r} does not exist: give the path of a saved .keras model")
    _check_model_file(Path(path))
    _archive_config(Path(path))


def _check_model_file(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"{str(path)!r} does not exist")
    if path.suffix != ".keras" or not path.is_file():
        raise UsageError(f"{str(path)!r} is not a saved .keras model file")


#: The entry of a ``.keras`` archive where backendlab keeps the run that trained the model.
RUN_ENTRY = "backendlab_run.json"


def save_model(model, path: str | os.PathLike, spec: RunSpec | None = None) -> Path:
    """``model.save`` to a temporary name, then rename: no half-written ``.keras`` file.

    With ``spec``, the file also carries the run (as :func:`saved_run` reads it), so
    ``train --resume FILE`` continues it without repeating its flags.
    """
    path = Path(path)
    check_save_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        with outside_distribution():
            model.save(tmp)
        if spec is not None:  # Keras reads only its own entries; this one rides along
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(RUN_ENTRY, json.dumps(spec.to_dict()))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def outside_distribution():
    """Within the block, no Keras distribution: under ``--processes`` only process 0 saves, and a variable
    Keras makes while saving (an optimizer's) must not wait for the other processes to make it too;
    each process predicts by itself."""
    import keras

    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


def trained_spec(prep: Prepared) -> RunSpec:
    """The run as a saved model carries it: its settings, with the epochs done so far."""
    return prep.config.replace(initial_epoch=prep.config.initial_epoch + prep.config.epochs)


def saved_run(path: str | os.PathLike) -> RunSpec | None:
    """The run a backendlab-saved ``.keras`` file carries (epochs done in ``initial_epoch``), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            if RUN_ENTRY not in archive.namelist():
                return None
            return RunSpec.from_dict(json.loads(archive.read(RUN_ENTRY)))
    except (OSError, zipfile.BadZipFile, ValueError, TypeError, UsageError):
        return None  # not a backendlab file, or a damaged one: load_model says what is wrong with it


def resumed_spec(path: str | os.PathLike, spec: RunSpec, given: set[str]) -> RunSpec:
    """The run to continue from ``path``: the one saved in it, with the settings in ``given`` taken from ``spec``.

    A file saved elsewhere carries no run: ``spec`` as it is.
    """
    saved = saved_run(path)
    if saved is None:
        return spec
    return saved.replace(**{name: getattr(spec, name) for name in given}, initial_epoch=0)


def _archive_config(path: Path) -> dict:
    """The model config inside a ``.keras`` file (a zip archive holding ``config.json``), or why it is not one."""
    name = f"{str(path)!r} is not a saved .keras model file"
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{name}: it is not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except KeyError:
        raise UsageError(f"{name}: the archive holds no config.json") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UsageError(f"{name}: its config.json cannot be read ({one_line(exc)})") from None


def _lambda_layers(config) -> list[str]:
    """Names of the Lambda layers anywhere in a model config."""
    if isinstance(config, list):
        return [name for item in config for name in _lambda_layers(item)]
    if not isinstance(config, dict):
        return []
    own = [config.get("config", {}).get("name", "?")] if config.get("class_name") == "Lambda" else []
    return own + [name for value in config.values() for name in _lambda_layers(value)]


def _foreign_optimizer(config: dict) -> dict:
    """``custom_objects`` that load an optimizer Keras recorded under one backend's own module.

    Keras 3.15 saves an optimizer compiled on PyTorch as ``keras.src.backend.torch.optimizers...``:
    loading the file on another backend imports torch for it (seconds), and where torch is not
    installed it fails ("Could not deserialize class 'SGD' because its parent module
    keras.src.backend.torch.optimizers.torch_sgd cannot be imported"). The public optimizer of the
    same name is that optimizer on every backend.
    """
    import keras

    optimizer = (config.get("compile_config") or {}).get("optimizer")
    if not isinstance(optimizer, dict) or not str(optimizer.get("module", "")).startswith("keras.src.backend."):
        return {}
    public = getattr(keras.optimizers, str(optimizer.get("class_name")), None)
    return {optimizer.get("registered_name") or optimizer["class_name"]: public} if public else {}


def users_custom_objects(spec: RunSpec) -> dict:
    """What a model trained by ``spec`` may have been saved with by name only: the public functions and
    classes of the user's data file and model file (the model's win a clash), for :func:`load_model`."""
    return {**user_objects(spec.data or "", "data"), **user_objects(spec.model, "model")}


def load_model(path: str | os.PathLike, custom_objects: dict | None = None):
    """A ``.keras`` file, saved on any backend, with its compile settings and optimizer state.

    ``custom_objects``: the user's functions and classes it may name (:func:`users_custom_objects`).
    A file that is not one, or that Keras will not load, is a UsageError naming the file and why.
    """
    import keras

    path = Path(path)
    _check_model_file(path)
    config = _archive_config(path)
    if '"module": "keras_hub' in json.dumps(config):
        # keras_hub registers its layers (BertBackbone, ...) with Keras when imported, and only then.
        with contextlib.suppress(ImportError):
            import keras_hub  # noqa: F401
    avoid_needless_tensorflow()
    try:
        custom_objects = {**(custom_objects or {}), **_foreign_optimizer(config)}
        model = keras.saving.load_model(path, custom_objects=custom_objects or None)
    except Exception as exc:  # a file from elsewhere can fail in any layer's from_config
        chain = [exc]  # Keras wraps the cause ("Could not locate class 'Fault'") in a generic message
        while (chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 20:
            chain.append(chain[-1].__cause__ or chain[-1].__context__)
        if not any("safe_mode" in str(e) for e in chain):
            reason = one_line(chain[-1]).split(" Full object config")[0]
            raise UsageError(f"{str(path)!r} cannot be loaded: {reason}") from None
        lambdas = _lambda_layers(config)
        what = f"its Lambda layer {lambdas[0]!r} holds" if lambdas else "it holds"
        raise UsageError(
            f"{str(path)!r} cannot be loaded: {what} Python code, which Keras does not load from a file (safe mode)"
        ) from None
    if getattr(model, "compiled", False):
        # Its compile settings came from the backend that saved it: JAX's resolved jit_compile=True
        # would mean torch.compile here. Let Keras resolve "auto" again for this backend.
        model.jit_compile = None
    return model
