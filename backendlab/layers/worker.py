"""The worker's side of :func:`backendlab.testing.assert_backends_agree`: one layer, one backend.

Runs in a warm pool worker (``KERAS_BACKEND`` is set); the orchestrator names the handler
``backendlab.layers.worker:handle``. Two jobs:

``check``  build the user's layer on the inputs, take the shared weights (the reference backend
           makes them and writes ``weights.npz``), then record its outputs in inference mode (and
           in training mode), the gradients of ``sum(outputs * cotangent)`` with respect to the
           inputs and the trainable weights (``_impl``'s ``input_and_weight_gradients``: the
           backend's own autodiff), and save it as ``model.keras`` with the outputs it gives.
``load``   load ``.keras`` files saved on other backends and record their outputs on the inputs.

Arrays go to ``.npz`` files beside ``result.json``, keyed ``inference/<i>``, ``training/<i>``,
``gradient/input/<i>``, ``gradient/weight/<i>`` and ``saved/<i>``, where ``i`` counts the
flattened outputs, input leaves or trainable weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from backendlab.compare.worker import save_npz
from backendlab.errors import one_line
from backendlab.specs import load_callable, user_objects
from backendlab.workers.serve import Progress

ARRAYS, WEIGHTS, MODEL = "arrays.npz", "weights.npz", "model.keras"


# --- the cotangent ------------------------------------------------------------------------------


def cotangent_for(outputs: list[np.ndarray], seed: int) -> list[np.ndarray | None]:
    """A fixed random weight per float output, the same on every backend (drawn by NumPy from ``seed``)."""
    return [
        np.random.default_rng([seed, i]).standard_normal(out.shape).astype("float32")
        if np.issubdtype(out.dtype, np.floating)
        else None
        for i, out in enumerate(outputs)
    ]


# --- the layer and its inputs ------------------------------------------------------------------


def read_inputs(path: str | Path, layout: dict):
    """The inputs as the user gave them: one array, a list of arrays, or a dict of them."""
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in layout["keys"]}
    if layout["kind"] == "array":
        return arrays[layout["keys"][0]]
    if layout["kind"] == "dict":
        return arrays
    return [arrays[key] for key in layout["keys"]]


def load_factory(spec: str):
    """The user's factory; its file's folder goes on ``sys.path`` (as pytest puts a test's), so its own imports work.

    The warm worker puts ``sys.path`` back after the job.
    """
    target = spec.rpartition(":")[0]
    if target.endswith(".py"):
        sys.path.insert(0, str(Path(target).resolve().parent))
    return load_callable(spec, "layer factory")


def build_layer(spec: str):
    import keras

    made = load_factory(spec)()
    if not isinstance(made, keras.layers.Layer):
        raise TypeError(f"layer factory {spec!r} returned {type(made).__name__}, not a keras Layer or Model")
    return made


def as_model(layer, inputs):
    """The layer itself if it is a Model, else a Functional model around it (``.keras`` files hold models)."""
    import keras

    if isinstance(layer, keras.Model):
        return layer

    def symbolic(x, name=None):
        return keras.Input(shape=x.shape[1:], dtype=str(x.dtype), name=name)

    if isinstance(inputs, dict):
        placeholders = {key: symbolic(x, key) for key, x in inputs.items()}
    else:
        placeholders = keras.tree.map_structure(symbolic, inputs)
    return keras.Model(placeholders, layer(placeholders))


def numpy_leaves(tree) -> list[np.ndarray]:
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(x)) for x in keras.tree.flatten(tree)]


def share_weights(layer, job: dict, workdir: Path) -> None:
    """The reference writes its freshly built weights; every other backend takes them, in the same order."""
    weights = layer.weights
    if job["weights"] is None:
        save_npz(workdir / WEIGHTS, {f"w{i:04d}": np.asarray(w.numpy()) for i, w in enumerate(weights)})
        return
    with np.load(job["weights"]) as stored:
        arrays = [stored[f"w{i:04d}"] for i in range(len(stored.files))]
    if len(arrays) != len(weights):
        raise ValueError(f"the layer has {len(weights)} weights here but {len(arrays)} on {job['reference']}")
    for variable, value in zip(weights, arrays):
        if tuple(variable.shape) != value.shape:
            raise ValueError(
                f"weight {variable.path} has shape {tuple(variable.shape)} here but {value.shape} on {job['reference']}"
            )
        variable.assign(value)


def gradients(layer, inputs, cotangent, training: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    """The gradients as ``gradient/input/<i>`` and ``gradient/weight/<i>`` arrays, and what had none."""
    import keras

    from backendlab._impl.common import differentiable
    from backendlab.backends import impl

    leaves = keras.tree.flatten(inputs)
    skipped = [f"input {i} is not a float: no gradient" for i, x in enumerate(leaves) if not differentiable(x)]
    if all(c is None for c in cotangent):
        return {}, ["no float output: no gradients"]
    if not layer.trainable_variables and len(skipped) == len(leaves):
        return {}, ["no float input and no trainable weight: no gradients"]
    input_grads, weight_grads = impl().input_and_weight_gradients(layer, inputs, cotangent, training)
    arrays = {f"gradient/input/{i}": g for i, g in enumerate(input_grads) if g is not None}
    arrays.update({f"gradient/weight/{i}": g for i, g in enumerate(weight_grads)})
    return {key: np.asarray(keras.ops.convert_to_numpy(g)) for key, g in arrays.items()}, skipped


# --- the jobs ----------------------------------------------------------------------------------


def check_job(job: dict, workdir: Path, progress: Progress) -> dict:
    import keras

    from backendlab.training.keras_fixes import avoid_needless_tensorflow, set_random_seed

    avoid_needless_tensorflow()
    set_random_seed(job["seed"])
    progress(0, 4, "building", force=True)
    layer = build_layer(job["factory"])
    given = read_inputs(job["inputs"], job["layout"])
    inputs = keras.tree.map_structure(keras.ops.convert_to_tensor, given)
    layer(inputs, training=False)  # builds it
    share_weights(layer, job, workdir)
    arrays, notes = {}, []
    progress(1, 4, "forward", force=True)
    outputs = numpy_leaves(layer(inputs, training=False))
    arrays.update({f"inference/{i}": out for i, out in enumerate(outputs)})
    if job["training"]:
        arrays.update({f"training/{i}": out for i, out in enumerate(numpy_leaves(layer(inputs, training=True)))})
    progress(2, 4, "gradients", force=True)
    if job["gradients"]:
        grads, skipped = gradients(layer, inputs, cotangent_for(outputs, job["seed"]), job["training"])
        arrays.update(grads)
        notes += skipped
    saved = None
    if job["saving"]:
        progress(3, 4, "saving", force=True)
        model = as_model(layer, given)
        model.save(workdir / MODEL)
        saved = str(workdir / MODEL)
        arrays.update({f"saved/{i}": out for i, out in enumerate(numpy_leaves(model(inputs, training=False)))})
    save_npz(workdir / ARRAYS, arrays)
    return {
        "backend": keras.backend.backend(),
        "layer": type(layer).__name__,
        "weights": [v.path for v in layer.weights],
        "trainable": [v.path for v in layer.trainable_variables],
        "model": saved,
        "notes": notes,
    }


def load_job(job: dict, workdir: Path, progress: Progress) -> dict:
    """Load each listed ``.keras`` file and record its outputs; one that fails to load is an error, not a crash."""
    import keras

    from backendlab.errors import UsageError
    from backendlab.training.files import load_model

    build_layer(job["factory"])  # the user's file (and factory) register their custom classes before any load
    inputs = keras.tree.map_structure(keras.ops.convert_to_tensor, read_inputs(job["inputs"], job["layout"]))
    loaded, errors = {}, {}
    for i, (saver, path) in enumerate(job["models"].items()):
        progress(i, len(job["models"]), f"loading {saver}'s model", force=True)
        try:
            model = load_model(path, user_objects(job["factory"], "layer factory"))
            outputs = numpy_leaves(model(inputs, training=False))
        except UsageError as exc:  # "'<path>' cannot be loaded: <why>": the check names the file already
            errors[saver] = str(exc).split(" cannot be loaded: ", 1)[-1]
            continue
        except Exception as exc:
            errors[saver] = one_line(exc)
            continue
        save_npz(workdir / f"from-{saver}.npz", {f"saved/{n}": out for n, out in enumerate(outputs)})
        loaded[saver] = f"from-{saver}.npz"
    return {"backend": keras.backend.backend(), "loaded": loaded, "errors": errors}


JOBS = {"check": check_job, "load": load_job}


def handle(job: dict, workdir: Path, progress: Progress) -> dict:
    return JOBS[job["kind"]](job, workdir, progress)
