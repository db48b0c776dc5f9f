"""How bench measures, shared with tune's worker: the models and their data, the timers, and the cells.

A Keras cell times ``fit`` or ``predict``, a native cell the framework's own loop on the same
shapes. Every timing is ``time.perf_counter`` around work that has finished (a loss or
prediction read back, ``block_until_ready`` on JAX, synchronisation on a GPU). Runs in a
worker whose backend is chosen; the frameworks are imported inside the functions.
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass

import numpy as np

from backendlab.bench.flops import forward_flops, step_flops
from backendlab.bench.results import BenchRow
from backendlab.bench.shapes import ADAM, LEARNING_RATE, SHAPES, synthetic_data
from backendlab.training.keras_fixes import set_random_seed


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def steps_for(samples: int, batch_size: int, steps_per_execution: int) -> int:
    """Whole executions of ``steps_per_execution`` batches, at least ``samples`` in all."""
    executions = max(1, -(-samples // (batch_size * steps_per_execution)))
    return executions * steps_per_execution


# --- models and data ------------------------------------------------------------------


@dataclass
class Samples:
    """The arrays a cell trains on: inputs, labels, and the data's sample weights (None: it has none)."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray | None = None

    def head(self, n: int) -> Samples:
        return Samples(self.x[:n], self.y[:n], None if self.w is None else self.w[:n])

    @property
    def parts(self) -> tuple:
        """``(x, y)``, or ``(x, y, w)`` with weights: a batch as a pipeline gives it."""
        return (self.x, self.y) if self.w is None else (self.x, self.y, self.w)

    def fit(self) -> dict:
        """``fit``'s arrays, as keywords."""
        return {"x": self.x, "y": self.y, "sample_weight": self.w}


def build_keras(name: str, job: dict, native):
    """The Keras model for ``name``, its loss, and the :class:`Samples` it runs on."""
    import keras

    from backendlab.data import from_arrays, load_dataset
    from backendlab.models import MODELS

    samples = job["max_samples"]
    if name in ("mlp", "cnn", "cnn_dropout"):
        shape = SHAPES[name]
        layers = [keras.Input(shape.input_shape)]

        def dropout():  # a new layer at each place
            return [keras.layers.Dropout(shape.dropout)] if shape.dropout else []

        if name == "mlp":
            layers += [keras.layers.Dense(w, activation="relu") for w in shape.hidden]
        else:
            for filters in shape.hidden:
                layers += [keras.layers.Conv2D(filters, shape.kernel, activation="relu"), keras.layers.MaxPooling2D(2)]
                layers += dropout()
            layers += [keras.layers.Flatten(), *dropout()]
        model = keras.Sequential(layers + [keras.layers.Dense(shape.classes)], name=name)
        x, y = synthetic_data(shape.input_shape, shape.classes, samples, job["run"]["seed"])
        return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), Samples(x, y)
    if name in MODELS and name not in SHAPES:
        # The real architectures train on their own seeded data (images, token ids), repeated.
        data = load_dataset(MODELS[name].default_data, job["run"]["seed"])
        reps = -(-samples // data.num_train)
        x, y = (np.concatenate([a] * reps)[:samples] for a in (data.x_train, data.y_train))
        return MODELS[name].build(data), data.loss(), Samples(x, y)
    if name in MODELS:
        shape = SHAPES[name]
        x, y = synthetic_data(shape.input_shape, shape.classes, samples, job["run"]["seed"])
        data = from_arrays(f"bench_{name}", (x, y), (x[:2], y[:2]))
        return MODELS[name].build(data), data.loss(), Samples(x, y)
    return build_user_model(name, job)


def build_user_model(spec: str, job: dict):
    """A user's ``file.py:build``, on its data function's arrays (and sample weights) or on synthetic inputs
    of its input shape."""
    from backendlab.data import Target, load_dataset
    from backendlab.errors import UsageError
    from backendlab.models import build_model
    from backendlab.pipelines import read_all

    model = build_model(spec, None)
    samples = job["max_samples"]
    if job["run"]["data"]:
        data = load_dataset(job["run"]["data"], job["run"]["seed"])
        if isinstance(data.x_train, dict) or isinstance(data.y_train, dict):
            raise UsageError(f"bench takes one input and one output; data {job['run']['data']!r} has several")
        parts = (data.x_train, data.y_train, data.w_train)
        if data.pipeline:  # its samples, read once; --pipelines says what fit reads them from
            parts = read_all(data.kind, data.pipeline.source, f"data {job['run']['data']!r}: train")
        reps = -(-samples // len(parts[0]))
        x, y, w = (None if a is None else np.concatenate([a] * reps)[:samples] for a in parts)
        loss = data.loss()
    else:
        shape = tuple(job["input_shape"] or ())
        if not shape:
            try:
                shape = tuple(model.inputs[0].shape[1:])
            except (AttributeError, IndexError, ValueError, TypeError):
                shape = ()
        if not shape or None in shape:
            raise UsageError(f"model {spec!r} does not state its input shape: pass --input-shape or --data")
        x = np.random.default_rng(job["run"]["seed"]).normal(size=(samples, *shape)).astype("float32")
        units = int(model(x[:2]).shape[-1])
        # Labels that fit the output: classes for softmax-sized outputs, 0/1 for one unit.
        _, y = synthetic_data(shape, max(units, 2), samples, job["run"]["seed"])
        w = None
        loss = Target("multiclass", units).loss if units > 1 else Target("binary", 1).loss
    if getattr(model, "compiled", False) and getattr(model, "loss", None) is not None:
        loss = model.loss  # the user's own choice
    return model, loss, Samples(x, y, w)


# --- timing -----------------------------------------------------------------------------


def summarize(row: BenchRow, times: list[float], steps: int, flops: float | None) -> BenchRow:
    samples = steps * row.batch_size
    rates = [samples / t for t in times]
    row.repeats, row.steps_per_repeat = len(times), steps
    row.samples_per_sec = statistics.median(rates)
    row.samples_per_sec_min, row.samples_per_sec_max = min(rates), max(rates)
    ms = [1000 * t / steps for t in times]
    row.ms_per_step, row.ms_per_step_min, row.ms_per_step_max = statistics.median(ms), min(ms), max(ms)
    row.flops_per_sample = flops
    if flops is not None:
        row.gflops_per_sec = step_flops(flops, row.mode) * row.samples_per_sec / 1e9
    return row


def keras_cell(cell: dict, job: dict, native, row: BenchRow) -> BenchRow:
    """A Keras model's cell, its random layers drawing as ``cell["random"]`` says (portable or backend)."""
    from backendlab.training import randomness

    with randomness.use(cell.get("random", "backend")):
        return _keras_cell(cell, job, native, row)


def _keras_cell(cell: dict, job: dict, native, row: BenchRow) -> BenchRow:
    import keras

    keras.backend.clear_session()
    set_random_seed(job["run"]["seed"])
    model, loss, samples = build_keras(cell["model"], job, native)
    jit = {"auto": "auto", "true": True, "false": False}[cell["jit_compile"]]
    optimizer = keras.optimizers.Adam(LEARNING_RATE, **ADAM)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=jit, steps_per_execution=row.steps_per_execution)
    row.jit_compile = str(model.jit_compile)
    row.params = int(model.count_params())
    batch, spe = row.batch_size, row.steps_per_execution
    steps = steps_for(job["samples_per_repeat"], batch, spe)
    n, first = steps * batch, batch * spe
    passes = job["warmup"] + job["repeats"]

    def wait(model, logs=None):
        for value in (logs or {}).values():
            float(np.asarray(value))
        native.sync([v.value for v in model.trainable_variables])

    if cell["mode"] == "fit" and cell.get("pipeline", "arrays") != "arrays":
        row.first_step_s = _first_step(model, samples.head(first), batch, wait)
        times = _pipeline_fit(model, cell["pipeline"], samples.head(n), row, passes, job["warmup"], wait)
    elif cell["mode"] == "fit":
        row.first_step_s = _first_step(model, samples.head(first), batch, wait)
        timer = EpochTimer(wait)
        model.fit(**samples.head(n).fit(), batch_size=batch, epochs=passes, shuffle=False, verbose=0, callbacks=[timer])
        times = timer.times[job["warmup"] :]
    else:
        start = time.perf_counter()
        model.predict(samples.x[:first], batch_size=batch, verbose=0)  # returns NumPy: the work is done
        row.first_step_s = time.perf_counter() - start
        times = []
        for _ in range(passes):
            start = time.perf_counter()
            model.predict(samples.x[:n], batch_size=batch, verbose=0)
            times.append(time.perf_counter() - start)
        times = times[job["warmup"] :]
    flops, unknown = forward_flops(model)
    if unknown:
        row.note = f"FLOPs leave out {', '.join(unknown)}"
    return summarize(row, times, steps, flops)


def _first_step(model, samples: Samples, batch, wait) -> float:
    start = time.perf_counter()
    model.fit(**samples.fit(), batch_size=batch, epochs=1, shuffle=False, verbose=0)
    wait(model)
    return time.perf_counter() - start


def _pipeline_fit(model, kind: str, samples: Samples, row: BenchRow, passes: int, warmup: int, wait) -> list[float]:
    """Each pass one ``fit`` epoch over a ``kind`` pipeline of the samples; sets ``row.input_stall``."""
    from backendlab.pipelines import InputRecorder, make_pipeline

    source = make_pipeline(kind, samples.parts, row.batch_size)
    steps = -(-len(samples.x) // row.batch_size)
    times, waits = [], []
    for _ in range(passes):
        recorder = InputRecorder(record=False)
        start = time.perf_counter()
        model.fit(recorder.epoch(kind, source, steps), steps_per_epoch=steps, epochs=1, verbose=0)
        wait(model)
        times.append(time.perf_counter() - start)
        waits.append(recorder.wait_s)
    row.input_stall = sum(waits[warmup:]) / sum(times[warmup:])
    return times[warmup:]


class EpochTimer:
    """A Keras callback timing each epoch of one ``fit`` call, so data set-up is paid once."""

    def __new__(cls, wait):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times, self.start = [], 0.0

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                wait(self.model, logs)
                self.times.append(time.perf_counter() - self.start)

        return _Timer()


def native_cell(cell: dict, job: dict, native, row: BenchRow) -> BenchRow:
    shape = SHAPES[cell["model"]]
    net = getattr(native, f"build_{cell['model']}")(shape, job["run"]["seed"])
    row.jit_compile, row.params = native.COMPILER, native.count_params(net)
    steps = steps_for(job["samples_per_repeat"], row.batch_size, 1)
    x, y = synthetic_data(shape.input_shape, shape.classes, steps * row.batch_size, job["run"]["seed"])
    batches = native.as_batches(x, y, row.batch_size)
    if cell["mode"] == "fit":
        train = native.make_train_step(net)
        run_one = lambda xb, yb: train(xb, yb)  # noqa: E731
    else:
        predict = native.make_predict_step(net)
        run_one = lambda xb, yb: predict(xb)  # noqa: E731
    start = time.perf_counter()
    native.sync(run_one(*batches[0]))
    row.first_step_s = time.perf_counter() - start
    times = []
    for _ in range(job["warmup"] + job["repeats"]):
        start = time.perf_counter()
        native.sync([run_one(xb, yb) for xb, yb in batches])
        times.append(time.perf_counter() - start)
    # Counted on the Keras twin: the same layers with the same shapes.
    twin = build_keras(cell["model"], {**job, "max_samples": 2}, native)[0]
    return summarize(row, times[job["warmup"] :], steps, forward_flops(twin)[0])
