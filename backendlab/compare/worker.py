"""Compare's jobs, each run by a worker of one backend (``KERAS_BACKEND`` is set for it).

Jobs:

``train``    build the model, load the shared starting weights (or make them, for the
             first worker), predict with them, train on backendlab's batch order, then
             save final weights, test predictions and the ``.keras`` model, and export it
             in each format asked for, checking each export in its runtime. Its result
             says what really ran (``ran``: the model's compile, batches, dtype policy,
             jit_compile; :func:`backendlab.training.info.what_ran`).
``twin``     the same from the shared start with every float weight moved by one unit in the
             last place (seeded, :func:`backendlab.compare.floor.perturb`): arrays only, no
             model file, no exports; the noise floor's measurement.
``predict``  load each listed ``.keras`` file (saved on any backend) and predict on the
             test split; optionally also predict with the starting weights (the numpy
             backend does this as an independent reference).
``export``   load other backends' ``.keras`` files and export them in the formats their own
             backend could not, each checked against the predictions its own backend made.

Arrays go to ``.npz`` files beside ``result.json``, floats narrower than float32 widened to it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from backendlab.errors import NonFiniteError, one_line
from backendlab.results import atomic_write_bytes
from backendlab.runspec import RunSpec
from backendlab.workers.protocol import MODEL
from backendlab.workers.ranks import is_main_process
from backendlab.workers.serve import Progress


def flatten(tree, prefix: str = "out") -> dict[str, np.ndarray]:
    """Arrays of a prediction or weight list as flat npz keys."""
    if isinstance(tree, dict):
        return {k: v for name, sub in tree.items() for k, v in flatten(sub, f"{prefix}/{name}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in flatten(sub, f"{prefix}/{i}").items()}
    return {prefix: np.asarray(tree)}


def unflatten(tree, arrays, prefix: str = "out"):
    """``tree``'s structure holding the arrays that :func:`flatten` made of a tree like it (``arrays``: by key)."""
    if isinstance(tree, dict):
        return {name: unflatten(sub, arrays, f"{prefix}/{name}") for name, sub in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [unflatten(sub, arrays, f"{prefix}/{i}") for i, sub in enumerate(tree)]
    return np.asarray(arrays[prefix])


def float32_if_narrower(array: np.ndarray) -> np.ndarray:
    """A float narrower than float32 (float16, ml_dtypes' bfloat16 and float8) as float32, exactly; others as they are.

    NumPy has no bfloat16 of its own: an ``.npz`` holds it as raw bytes (``|V2``) that read back as
    no numbers at all. Widened, every value is kept, and the orchestrator diffs them as float32.
    """
    dtype = array.dtype
    if dtype.itemsize < 4 and (dtype.kind == "f" or dtype.name.startswith(("float", "bfloat"))):
        return array.astype(np.float32)
    return array


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays to an ``.npz``, written atomically; floats narrower than float32 widened to it."""
    buffer = io.BytesIO()
    np.savez(buffer, **{key: float32_if_narrower(np.asarray(a)) for key, a in arrays.items()})
    atomic_write_bytes(path, buffer.getvalue())


def train_job(job: dict, workdir: Path, progress: Progress) -> dict:
    from backendlab.training.files import outside_distribution, save_model, trained_spec
    from backendlab.training.info import what_ran
    from backendlab.training.loops import predict, train
    from backendlab.training.preparation import prepare
    from backendlab.training.schedule import epoch_steps

    initial = Path(job["initial_weights"])
    progress(0, 1, "building")
    main = is_main_process()  # under torchrun, rank 0 writes the files
    spec = RunSpec.from_dict(job["run"])
    if job["make_initial"]:
        prep = prepare(spec)  # every rank builds the same weights from the same seed
        if main:
            tmp = initial.with_name(f".{initial.stem}.tmp.weights.h5")
            with outside_distribution():  # process 0 alone, under --processes
                prep.model.save_weights(tmp)
            atomic_write_bytes(initial, tmp.read_bytes())
            tmp.unlink()
    else:
        prep = prepare(spec, initial_weights=initial)
    twin = job.get("twin_seed")
    if twin is not None:  # a perturbed twin of the shared start: see backendlab.compare.floor
        from backendlab.compare.floor import perturb

        prep.model.set_weights(perturb(prep.model.get_weights(), twin))
    initial_predictions = flatten(predict(prep))
    if main:
        save_npz(workdir / "initial_predictions.npz", initial_predictions)
    total = spec.epochs * epoch_steps(prep.config, prep.data)
    progress(0, total, "training", force=True)
    try:
        result = train(prep, on_step=lambda step, loss: progress(step, total, "training", loss=loss))
    except NonFiniteError as exc:
        # Stopped at the first NaN or inf: the run up to there is the result; a broken model is not saved.
        return {**exc.result.to_dict(), "ran": what_ran(prep)}
    progress(total, total, "saving", force=True)
    predictions = flatten(predict(prep))
    if main:
        save_npz(workdir / "weights.npz", flatten(prep.model.get_weights(), "w"))
        save_npz(workdir / "predictions.npz", predictions)
        if twin is None:  # a twin is only measured: nothing loads it
            save_model(prep.model, workdir / MODEL, trained_spec(prep))
    exports = {}
    if main and job.get("exports") and twin is None:
        from backendlab.export.run import check_exports

        progress(total, total, "exporting", force=True)
        exports = check_exports(prep.model, prep.data.x_test, workdir / "exports", job["exports"], job["export_atol"])
    return {**result.to_dict(), "exports": exports, "ran": what_ran(prep)}


def predict_job(job: dict, workdir: Path, progress: Progress) -> dict:
    import keras

    from backendlab.data import load_dataset
    from backendlab.errors import UsageError
    from backendlab.training.files import load_model, users_custom_objects

    spec = RunSpec.from_dict(job["run"])
    data = load_dataset(spec.data, spec.seed)
    # The user's files register their custom classes when imported, and lend the rest by name.
    custom_objects = users_custom_objects(spec)
    out: dict[str, str] = {}
    errors: dict[str, str] = {}  # a model that loaded but did not predict, and the starting predictions
    unloadable: dict[str, str] = {}  # saver -> why its file could not be loaded here
    todo = dict(job["models"])
    for i, (saver, path) in enumerate(todo.items()):
        progress(i, len(todo), f"loading {saver}'s model")
        try:
            model = load_model(path, custom_objects)
        except UsageError as exc:  # "'<path>' cannot be loaded: <why>": the cell names the file already
            unloadable[saver] = str(exc).split(" cannot be loaded: ", 1)[-1]
            continue
        except Exception as exc:  # one file that does not load must not hide the others
            unloadable[saver] = one_line(exc)
            continue
        try:
            y = model.predict(data.x_test, batch_size=spec.batch_size, verbose=0)
            save_npz(workdir / f"from-{saver}.npz", flatten(y))
            out[saver] = f"from-{saver}.npz"
        except Exception as exc:
            errors[saver] = one_line(exc)
    if job.get("initial_weights"):
        # Built directly, not through prepare(): this also runs on Keras's numpy
        # backend, which can predict but not train.
        from backendlab.models import build_model, check_compatible

        try:
            model = build_model(spec.model, data)
            check_compatible(model, data, spec.model)  # a lazily built model is built on a real sample first
            model.load_weights(job["initial_weights"])
            y = model.predict(data.x_test, batch_size=spec.batch_size, verbose=0)
            save_npz(workdir / "initial_predictions.npz", flatten(y))
            out["initial"] = "initial_predictions.npz"
        except Exception as exc:
            errors["initial"] = one_line(exc)
    return {"backend": keras.backend.backend(), "predictions": out, "errors": errors, "unloadable": unloadable}


def export_job(job: dict, workdir: Path, progress: Progress) -> dict:
    import keras

    from backendlab.data import load_dataset
    from backendlab.export.formats import failed_cell
    from backendlab.export.run import Expected, check_export
    from backendlab.training.files import load_model, users_custom_objects

    spec = RunSpec.from_dict(job["run"])
    data = load_dataset(spec.data, spec.seed)
    custom_objects = users_custom_objects(spec)
    cells: dict[str, dict[str, dict]] = {}
    for i, (saver, todo) in enumerate(job["exports"].items()):
        progress(i, len(job["exports"]), f"exporting {saver}'s model")
        try:
            model = load_model(todo["model"], custom_objects)
            # The structure of its outputs, from one row: the saved predictions are flat.
            structure = model.predict(keras.tree.map_structure(lambda a: a[:1], data.x_test), verbose=0)
            with np.load(todo["predictions"], allow_pickle=False) as saved:
                expected = Expected(unflatten(structure, saved), f"{saver}'s trained model")
        except Exception as exc:
            failed = failed_cell(f"reading {saver}'s model and predictions: {one_line(exc)}")
            cells[saver] = dict.fromkeys(todo["formats"], failed)
            continue
        atol = job["export_atol"]
        cells[saver] = {
            fmt: check_export(model, data.x_test, workdir / saver / fmt, fmt, atol=atol, expected=expected)
            for fmt in todo["formats"]
        }
    return {"backend": keras.backend.backend(), "cells": cells}


JOBS = {"train": train_job, "twin": train_job, "predict": predict_job, "export": export_job}


def handle(job: dict, workdir: Path, progress: Progress) -> dict:
    return JOBS[job["kind"]](job, workdir, progress)
