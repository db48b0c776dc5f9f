"""Where and why two backends part: replay a run to a step, then take that step apart phase by phase.

Runs inside a worker process (``KERAS_BACKEND`` set); frameworks are imported inside functions only.

``replay``  job ``{"run": RunSpec dict, "initial_weights": .weights.h5 or None, "steps": s, "state": path}``:
            prepare the model as compare's training worker does, apply ``s`` optimizer steps on the
            first ``s`` batches of backendlab's shared batch order (across epochs), and save the
            full state to ``state`` (.npz): ``model/<variable.path>`` for every model variable,
            ``optimizer/<variable.path>`` for every optimizer variable. ``None`` for the
            weights: the portable start drawn from the seed.
``probe``   job ``{"run": RunSpec dict, "state": path, "step": s}``: load such a state (saved on any
            backend), take batch ``s`` (0-based: training step ``s + 1``) and record into
            ``probe.npz``, under keys prefixed by their phase:

            ``forward/<layer>#<call>/<output>``  each layer's output, in training mode
            ``loss/output/<name>``, ``loss/regularization/<variable.path>``, ``loss/additional``
            (the sum of ``model.losses``), ``loss/total``
            ``gradient/<variable.path>``         as the backend's own autodiff gives it (dense)
            ``update/model/<path>``, ``update/optimizer/<path>``  what one optimizer step changes
            ``state/<variable.path>``            non-trainable changes from the forward pass

            The result (the manifest) lists every compared place in the order
            :func:`backendlab.compare.locate.locate` walks them, with its layer and variable.
``evaluate`` job ``{"run": RunSpec dict, "weights": path, "window": [start, stop]}``: load trained weights
            (``weights.npz`` as compare's training worker saves them: ``w/<i>`` in ``get_weights`` order) and
            evaluate the test set as ``model.evaluate`` does, batch by batch, into ``probe.npz``:

            ``forward/<layer>#<call>/<output>``  each layer's output in inference (``predict``'s forward
            pass too), for the test samples ``window`` (whole batches; default: all), batches concatenated
            ``loss/output/<name>``, ``loss/regularization/<variable.path>``, ``loss/additional``,
            ``loss/total``                       evaluate's loss and its terms, over the whole test set
            ``metrics/<name>``                   evaluate's compiled metrics, over the whole test set

The gradient and update are the backend's ``fit`` step taken apart (``_impl`` ``fit_gradients``
and ``apply_gradients``): the optimizer receives exactly what it receives in ``fit``, so a sparse
``tf.IndexedSlices`` gradient stays sparse for the update and is densified only to be recorded.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from backendlab.backends import impl
from backendlab.compare.worker import save_npz
from backendlab.errors import UsageError
from backendlab.runspec import RunSpec
from backendlab.workers.serve import Progress

PHASES = ("forward", "loss", "gradient", "update", "state")


# --- the shared batch order, and the state on disk --------------------------------------


def batch_index(prep, step: int) -> np.ndarray:
    """The samples of batch ``step`` (0-based) of backendlab's shared order, counting across epochs."""
    from backendlab.training.schedule import batch_slices, epoch_orders, samples_per_epoch, steps_per_epoch

    config, n = prep.config, prep.data.num_train
    epoch, within = divmod(step, steps_per_epoch(config, n))
    first = config.initial_epoch
    order = epoch_orders(n, first + epoch + 1, config.seed)[first + epoch][: samples_per_epoch(config, n)]
    return order[batch_slices(len(order), config.batch_size)[within]]


def _numpy(value) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


def _keyed(variables, prefix: str) -> dict[str, Any]:
    """``{prefix/variable.path: variable}``; a repeated path gets ``#i`` (paths are unique in Keras 3)."""
    out: dict[str, Any] = {}
    for variable in variables:
        key = f"{prefix}/{variable.path}"
        out[key if key not in out else f"{key}#{len(out)}"] = variable
    return out


def _state_variables(model) -> dict[str, Any]:
    optimizer = model.optimizer
    if not optimizer.built:  # its slots must exist to be saved or loaded
        optimizer.build(model.trainable_variables)
    return {**_keyed(model.variables, "model"), **_keyed(optimizer.variables, "optimizer")}


def save_state(model, path: str | Path) -> int:
    variables = _state_variables(model)
    save_npz(Path(path), {key: _numpy(v) for key, v in variables.items()})
    return len(variables)


def load_state(model, path: str | Path) -> str:
    """Assign a saved state by variable path; where the paths differ (auto-names), by order. Returns how."""
    variables = _state_variables(model)
    with np.load(path, allow_pickle=False) as npz:
        saved = {key: npz[key] for key in npz.files}
    by = "path"
    if set(saved) != set(variables):
        shapes = [tuple(v.shape) for v in variables.values()]
        if len(saved) != len(variables) or [a.shape for a in saved.values()] != shapes:
            missing = sorted(set(variables) - set(saved))[:3]
            raise UsageError(
                f"state {str(path)!r} does not fit this model: {len(saved)} saved arrays for {len(variables)} "
                f"variables (not saved: {', '.join(missing)})"
            )
        saved, by = dict(zip(variables, saved.values())), "order"
    for key, variable in variables.items():
        variable.assign(saved[key].astype(variable.dtype, copy=False))
    return by


def _batch(prep, step: int):
    """Batch ``step``'s ``(x, y, sample_weight)``; ``sample_weight`` None where the data has none."""
    index = batch_index(prep, step)
    return (*prep.data.take("train", index), prep.data.weights("train", index))


def _prepare(job: dict, **options):
    import keras

    from backendlab.training.preparation import prepare

    # A fresh session per job: Keras's auto-names (dense_1, ...) then match a fresh process's.
    keras.backend.clear_session()
    spec = RunSpec.from_dict(job["run"])
    if spec.devices != 1:
        raise UsageError("the probe replays a run on one device: give it --devices 1")
    return prepare(spec, **options)


# --- replay -----------------------------------------------------------------------------


def replay_job(job: dict, workdir: Path, progress: Progress) -> dict:
    from backendlab.training.step import TrainStep

    steps = int(job["steps"])
    progress(0, steps, "building")
    initial = job.get("initial_weights")
    prep = _prepare(job, **({"initial_weights": initial} if initial else {}))
    model = prep.model
    custom = TrainStep(model, model.loss, model.optimizer) if prep.config.loop == "custom" else None
    for step in range(steps):
        x, y, w = _batch(prep, step)
        if custom is not None:
            custom.run(x, y, w)
        else:
            model.train_on_batch(x, y, sample_weight=w)
        progress(step + 1, steps, "replaying")
    count = save_state(model, job["state"])
    iterations = int(_numpy(model.optimizer.iterations))
    return {"state": str(job["state"]), "variables": count, "steps": steps, "iterations": iterations}


# --- probe ------------------------------------------------------------------------------


def _descendants_of_loops(layers) -> set[int]:
    """Layers a recurrent layer runs inside the backend's loop (its cell): on JAX they see tracers."""
    import keras

    inside: set[int] = set()
    for layer in layers:
        if isinstance(layer, keras.layers.RNN):
            inside.update(id(sub) for sub in layer._flatten_layers(include_self=False, recursive=True))
    return inside


@contextlib.contextmanager
def recording_outputs(model, records: list[dict], arrays: dict[str, np.ndarray]):
    """Within the block, every sublayer's call records its outputs (as NumPy) in completion order.

    Works the same for Sequential, Functional and subclassed models: each layer's ``call`` is
    wrapped on the instance and put back afterwards. Outputs that are not concrete (traced
    inside a backend's loop) are left out.
    """
    import keras

    from backendlab.training.stochastic import sublayers

    layers = sublayers(model)
    skipped = _descendants_of_loops(layers)
    calls: dict[int, int] = {}
    originals = []
    for layer in layers:
        if id(layer) in skipped:
            continue
        originals.append((layer, layer.__dict__.get("call")))
        current = layer.call

        def call(*args, _layer=layer, _call=current, **kwargs):
            out = _call(*args, **kwargs)
            index = calls.get(id(_layer), 0)
            calls[id(_layer)] = index + 1
            for i, leaf in enumerate(keras.tree.flatten(out)):
                try:
                    value = _numpy(leaf)
                except Exception:  # symbolic or traced: nothing to record
                    continue
                key = f"forward/{_layer.name}#{index}/{i}"
                arrays[key] = value
                records.append({"key": key, "layer": _layer.name, "class": type(_layer).__name__, "call": index})
            return out

        layer.call = call
    try:
        yield
    finally:
        for layer, own in originals:
            if own is None:
                del layer.call
            else:
                layer.call = own


def _owners(model) -> dict[str, tuple[str, str]]:
    """Variable path -> (layer name, layer class) of the innermost layer that holds it."""
    from backendlab.training.stochastic import sublayers

    owners: dict[str, tuple[str, str]] = {}
    for layer in [model, *sublayers(model)]:  # outer first, so inner layers overwrite
        for variable in layer.weights:
            owners[variable.path] = (layer.name, type(layer).__name__)
    return owners


def _slot_owner(slot_path: str, paths: list[str]) -> str | None:
    """The model variable an optimizer slot belongs to (Keras names slots after the variable's path)."""
    name = slot_path.split("/", 1)[-1]
    found = [p for p in paths if name.startswith(p.replace("/", "_") + "_")]
    return max(found, key=len) if found else None


def _place(key: str, phase: str, layer=None, layer_class=None, variable=None, scale=None) -> dict:
    """One compared place; ``scale``: for a change (new - old), the largest magnitude of the old value."""
    place = {"key": key, "phase": phase, "layer": layer, "layer_class": layer_class, "variable": variable}
    return place if scale is None else {**place, "scale": scale}


def _magnitude(value: np.ndarray) -> float:
    return float(np.max(np.abs(value), initial=0.0))


def _record_loss(model, x, y, w, y_pred, arrays: dict, places: list) -> None:
    compile_loss = getattr(model, "_compile_loss", None)  # Keras's per-output loss trackers live here
    for tracker in getattr(compile_loss, "metrics", None) or []:
        tracker.reset_state()
    total = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=w, training=True)
    _record_loss_terms(model, arrays, places)
    arrays["loss/total"] = _numpy(total)
    places.append(_total_loss_place(model))


def _total_loss_place(model) -> dict:
    """The total loss's place, with the function the model was compiled with where it has one."""
    loss = model.loss
    function = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(loss, "__name__", None)
    place = _place("loss/total", "loss")
    return {**place, "function": function} if isinstance(function, str) else place


def _record_loss_terms(model, arrays: dict, places: list) -> None:
    """Each output's loss as its tracker holds it (where there are several), and each additional loss."""
    compile_loss = getattr(model, "_compile_loss", None)
    trackers = list(getattr(compile_loss, "metrics", None) or [])  # built by the first call
    if len(trackers) > 1:
        for tracker in trackers:
            name = tracker.name.removesuffix("_loss")
            arrays[f"loss/output/{name}"] = _numpy(tracker.result())
            places.append(_place(f"loss/output/{name}", "loss", layer=name))
    owners = _owners(model)
    for variable in model.trainable_weights:  # each weight's regularizer, named after the weight
        if getattr(variable, "regularizer", None) is not None:
            key = f"loss/regularization/{variable.path}"
            arrays[key] = _numpy(variable.regularizer(variable.value))
            places.append(_place(key, "loss", *owners.get(variable.path, (None, None)), variable.path))
    if model.losses:  # regularization, activity regularization and add_loss: all fit adds
        arrays["loss/additional"] = _numpy(sum(model.losses))
        places.append(_place("loss/additional", "loss", variable="the model's additional losses"))


def probe_job(job: dict, workdir: Path, progress: Progress) -> dict:
    import keras

    step = int(job["step"])
    progress(0, len(PHASES), "building")
    prep = _prepare(job)
    model, backend = prep.model, impl()
    loaded_by = load_state(model, job["state"])
    x, y, w = (
        None if t is None else keras.tree.map_structure(keras.ops.convert_to_tensor, t) for t in _batch(prep, step)
    )
    owners = _owners(model)
    arrays: dict[str, np.ndarray] = {}
    places: list[dict] = []
    start = {v.path: _numpy(v) for v in model.variables}

    # 1-2. forward and loss, with every layer's call recorded
    progress(1, len(PHASES), "forward")
    records: list[dict] = []
    with recording_outputs(model, records, arrays):
        y_pred = model(x, training=True)
    places += [_place(r["key"], "forward", r["layer"], r["class"]) for r in records]
    _record_loss(model, x, y, w, y_pred, arrays, places)
    for variable in model.variables:  # the probe's own pass leaves no trace
        variable.assign(start[variable.path])

    # 3. gradients, as fit computes them; this pass's state changes are fit's (5.)
    progress(2, len(PHASES), "gradient")
    loss, grads = backend.fit_gradients(model, x, y, w)
    trainable = list(model.trainable_variables)
    sparse = []
    for variable, grad in zip(trainable, grads):
        key = f"gradient/{variable.path}"
        arrays[key] = np.zeros(variable.shape, "float32") if grad is None else _numpy(grad)
        if grad is not None and type(grad).__name__ == "IndexedSlices":
            sparse.append(variable.path)
    for variable in reversed(trainable):  # backpropagation's order: the output's layer first
        places.append(
            _place(f"gradient/{variable.path}", "gradient", *owners.get(variable.path, (None, None)), variable.path)
        )
    state_places = []
    for variable in model.non_trainable_variables:
        arrays[f"state/{variable.path}"] = _numpy(variable) - start[variable.path]
        owner = owners.get(variable.path, (None, None))
        scale = _magnitude(start[variable.path])
        state_places.append(_place(f"state/{variable.path}", "state", *owner, variable.path, scale))

    # 4. one optimizer step with exactly those gradients
    progress(3, len(PHASES), "update")
    slots = _keyed(model.optimizer.variables, "optimizer")
    before = {key: _numpy(v) for key, v in {**_keyed(trainable, "model"), **slots}.items()}
    backend.apply_gradients(model.optimizer, grads, trainable)
    paths = [v.path for v in trainable]
    for key, variable in {**_keyed(trainable, "model"), **slots}.items():
        arrays[f"update/{key}"] = _numpy(variable) - before[key]
        path = key.split("/", 1)[1]
        owner = path if key.startswith("model/") else _slot_owner(path, paths)
        layer = owners.get(owner, (None, None)) if owner else (None, None)
        places.append(_place(f"update/{key}", "update", *layer, path, _magnitude(before[key])))
    places += state_places

    progress(len(PHASES), len(PHASES), "saving")
    save_npz(workdir / "probe.npz", arrays)
    return {
        "backend": keras.backend.backend(),
        "step": step,
        "training_step": step + 1,
        "batch_size": int(len(keras.tree.flatten(x)[0])),
        "state_loaded_by": loaded_by,
        "loss": float(_numpy(loss)),
        "arrays": "probe.npz",
        "places": places,
        "layers": _layers(model, records),
        "sparse_gradients": sparse,
        "stochastic_layers": prep.stochastic,
        "stochastic_outside": prep.outside,
        "random": prep.config.random,
    }


def _layers(model, records: list[dict]) -> dict:
    """The layers whose outputs were recorded, in order, and those the recording could not reach."""
    from backendlab.training.stochastic import sublayers

    reached = {r["layer"] for r in records}
    return {
        "reached": [
            {"name": name, "class": cls, "order": i}
            for i, (name, cls) in enumerate(dict.fromkeys((r["layer"], r["class"]) for r in records))
        ],
        "not_reached": [
            {"name": layer.name, "class": type(layer).__name__}
            for layer in sublayers(model)
            if layer.name not in reached
        ],
    }


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """One layer's outputs of consecutive batches as one array: along the samples where it has them."""
    if all(p.ndim and p.shape[1:] == parts[0].shape[1:] for p in parts):
        return np.concatenate(parts)
    return np.concatenate([p.ravel() for p in parts])


def evaluate_job(job: dict, workdir: Path, progress: Progress) -> dict:
    """``model.evaluate`` on the test set taken apart: each batch as its ``test_step`` computes it, eagerly."""
    import keras

    from backendlab.training.hooks import STEP_LOSS
    from backendlab.training.schedule import batch_slices

    prep = _prepare(job)
    model, data = prep.model, prep.data
    with np.load(job["weights"], allow_pickle=False) as npz:
        model.set_weights([npz[f"w/{i}"] for i in range(len(npz.files))])
    samples = len(keras.tree.flatten(data.x_test)[0])
    start, stop = job.get("window") or (0, samples)
    slices = batch_slices(samples, prep.config.batch_size)
    outputs: dict[str, list[np.ndarray]] = {}
    records: list[dict] = []
    model.reset_metrics()
    for i, part in enumerate(slices):
        progress(i, len(slices), "evaluating")
        index = np.arange(part.start, part.stop)
        (x, y), w = data.take("test", index), data.weights("test", index)
        x, y = keras.tree.map_structure(keras.ops.convert_to_tensor, (x, y))
        w = None if w is None else keras.tree.map_structure(keras.ops.convert_to_tensor, w)
        recorded: dict[str, np.ndarray] = {}
        calls: list[dict] = []
        inside = start < part.stop and part.start < stop  # a batch of the window: its outputs are recorded
        with recording_outputs(model, calls, recorded) if inside else contextlib.nullcontext():
            y_pred = model(x, training=False)
        records = records or calls
        for key, value in recorded.items():
            outputs.setdefault(key, []).append(value)
        # As Keras's test_step: the loss, its tracker weighted by the batch's size, then the compiled metrics.
        loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=w, training=False)
        model._loss_tracker.update_state(loss, sample_weight=part.stop - part.start)
        model.compute_metrics(x, y, y_pred, sample_weight=w)
    arrays = {key: _joined(parts) for key, parts in outputs.items()}
    places = [_place(r["key"], "forward", r["layer"], r["class"]) for r in records]
    _record_loss_terms(model, arrays, places)
    results = {k: _numpy(v) for k, v in model.get_metrics_result().items() if k != STEP_LOSS}
    arrays["loss/total"] = results.pop("loss")
    places.append(_total_loss_place(model))
    for name, value in results.items():
        if f"loss/output/{name.removesuffix('_loss')}" not in arrays:
            arrays[f"metrics/{name}"] = value
            places.append(_place(f"metrics/{name}", "metrics", variable=name))
    progress(len(slices), len(slices), "saving")
    save_npz(workdir / "probe.npz", arrays)
    return {
        "backend": keras.backend.backend(),
        "during": "evaluate",
        "window": [start, stop],
        "test_samples": samples,
        "loss": float(arrays["loss/total"]),
        "arrays": "probe.npz",
        "places": places,
        "layers": _layers(model, records),
        "stochastic_layers": prep.stochastic,
        "stochastic_outside": prep.outside,
        "random": prep.config.random,
    }


JOBS = {"replay": replay_job, "probe": probe_job, "evaluate": evaluate_job}
REQUIRED = {"replay": ("run", "steps", "state"), "probe": ("run", "state", "step"), "evaluate": ("run", "weights")}


def handle(job: dict, workdir: Path, progress: Progress) -> dict:
    """A worker's entry: ``job["kind"]`` is ``replay``, ``probe`` or ``evaluate``."""
    kind = job.get("kind")
    if kind not in JOBS:
        raise UsageError(f"unknown probe job kind {kind!r}: use {', '.join(JOBS)}")
    missing = [key for key in REQUIRED[kind] if key not in job]
    if missing:
        raise UsageError(f"probe job {kind!r} lacks {', '.join(missing)}")
    from backendlab.training import randomness

    # Replayed and probed as the run drew (--random): portably, every backend's masks are the run's.
    with randomness.use(RunSpec.from_dict(job["run"]).random):
        return JOBS[kind](job, workdir, progress)
