"""The tune worker: one backend and one thread setting per process, started by ``backendlab.tune.run``.

For each model and batch size it times the native loop (where the model has one), then each
setting of its job: a fresh model from the same portable starting weights, trained first for
the parity steps (which also gives the time to the first step), then timed like ``bench`` (median
of repeats after warm-up, ``time.perf_counter`` around work that has finished). The weights
after the parity steps go to an ``.npz`` and are judged against the default setting's in this
process, or against the file the job names (a worker with other thread counts). With
``search``, the fastest value of each axis that kept parity is then tried in combination.
A setting that raises is a ``failed`` row with its error line; the rows so far are written after
each setting, so a worker that dies keeps what it measured.
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from backendlab._impl.common import median_ms
from backendlab.backends import ensure_backend
from backendlab.bench.measure import EpochTimer, Samples, build_keras, native_cell, peak_rss_mb, steps_for
from backendlab.bench.shapes import ADAM, LEARNING_RATE, SHAPES
from backendlab.compare import floor
from backendlab.compare.diff import Diff, combine
from backendlab.errors import one_line
from backendlab.results import to_jsonable, write_json
from backendlab.text import plural
from backendlab.training.keras_fixes import set_random_seed
from backendlab.tune.grid import WHOLE_STEP, Setting, applicable, resolved
from backendlab.tune.grid import combine as combine_settings
from backendlab.tune.results import (
    DIFFERS,
    NOT_CHECKED,
    REFERENCE,
    SAME,
    WITHIN_ROUNDING,
    NativeRow,
    Parity,
    Profile,
    TuneRow,
)

PARTIAL = "partial.json"
PROFILE_STEPS = 10


# --- one setting -------------------------------------------------------------------------


def build(cell: dict, job: dict, native, setting: Setting):
    """A fresh model under the setting's dtype policy, from the portable starting weights, and its data."""
    import keras

    from backendlab.init import portable_init

    keras.backend.clear_session()
    set_random_seed(job["run"]["seed"])
    keras.config.set_dtype_policy(setting.dtype_policy)
    try:
        model, loss, samples = build_keras(cell["model"], job, native)
        if not model.built:
            model(samples.x[:1])
    finally:
        keras.config.set_dtype_policy("float32")
    portable_init(model, job["run"]["seed"])
    optimizer = keras.optimizers.Adam(LEARNING_RATE, **ADAM)
    if setting.dtype_policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return model, loss, optimizer, samples


def _running_mean(losses) -> np.ndarray:
    """The loss's mean over the steps so far, after each step: what fit logs as ``loss``."""
    values = np.asarray(losses, dtype=np.float64)
    return np.cumsum(values) / np.arange(1, len(values) + 1)


class FitLoop:
    """``model.fit`` with the setting's ``jit_compile`` and ``steps_per_execution``; for the whole-step
    loop, inside ``whole_step_fit`` (backendlab's train function, one compiled graph)."""

    def __init__(self, model, loss, optimizer, setting: Setting, native):
        from backendlab.training.step import whole_step_fit

        model.compile(
            optimizer=optimizer,
            loss=loss,
            jit_compile=setting.jit_compile,
            steps_per_execution=setting.steps_per_execution,
        )
        self.model, self.native, self.spe = model, native, setting.steps_per_execution
        self.jit_resolved = str(model.jit_compile)
        self.scope = whole_step_fit if setting.loop == WHOLE_STEP else contextlib.nullcontext

    def wait(self, model, logs=None):
        for value in (logs or {}).values():
            float(np.asarray(value))
        self.native.sync([v.value for v in model.trainable_variables])

    def train(self, samples: Samples, batch_size: int) -> tuple[float, float, list[float]]:
        """One epoch over the samples; returns (its mean loss, seconds to the first execution's end, the
        loss's running mean after each execution, as fit logs it)."""
        import keras

        start, first, running = time.perf_counter(), [], []

        class First(keras.callbacks.Callback):
            def on_train_batch_end(cb, batch, logs=None):
                if not first:
                    self.wait(cb.model, logs)
                    first.append(time.perf_counter() - start)
                running.append(float(np.asarray(logs["loss"])))

        with self.scope(self.model):
            history = self.model.fit(
                **samples.fit(), batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[First()]
            ).history
        return float(history["loss"][-1]), first[0], running

    def train_twin(self, samples: Samples, batch_size: int, seed: int) -> list[float]:
        """Like :meth:`train`, each step a ``fit`` of its own with every weight moved by 1 ulp before it
        (compare.floor.perturb, seeded by ``seed`` and the step); returns the loss's running mean after each step."""
        losses = []
        for step, start in enumerate(range(0, len(samples.x), batch_size)):
            self.model.set_weights(floor.perturb(self.model.get_weights(), [seed, step]))
            part = {k: None if a is None else a[start : start + batch_size] for k, a in samples.fit().items()}
            with self.scope(self.model):
                history = self.model.fit(**part, batch_size=batch_size, epochs=1, shuffle=False, verbose=0).history
            losses.append(history["loss"][-1])
        return _running_mean(losses).tolist()

    def time(self, samples: Samples, batch_size: int, passes: int) -> list[float]:
        timer = EpochTimer(self.wait)
        with self.scope(self.model):
            self.model.fit(
                **samples.fit(), batch_size=batch_size, epochs=passes, shuffle=False, verbose=0, callbacks=[timer]
            )
        return timer.times


class StepLoop:
    """backendlab's ``TrainStep``: one call per batch, the batches on the device beforehand, no sync per step."""

    def __init__(self, model, loss, optimizer, setting: Setting, native):
        from backendlab.training.step import TrainStep

        self.step = TrainStep(model, loss, optimizer, jit_compile=setting.jit_compile)
        self.model, self.native = model, native
        self.jit_resolved = str(setting.jit_compile)

    def batches(self, samples: Samples, batch_size: int) -> list:
        import keras

        t = keras.ops.convert_to_tensor
        return [tuple(t(a[i : i + batch_size]) for a in samples.parts) for i in range(0, len(samples.x), batch_size)]

    def train(self, samples: Samples, batch_size: int) -> tuple[float, float, list[float]]:
        import keras

        batches = self.batches(samples, batch_size)
        start = time.perf_counter()
        losses = self.step.run_batches(batches[:1])
        self.native.sync(losses)
        first = time.perf_counter() - start
        losses += self.step.run_batches(batches[1:])
        running = _running_mean([keras.ops.convert_to_numpy(v) for v in losses])  # to be held to fit's
        return float(running[-1]), first, running.tolist()

    def time(self, samples: Samples, batch_size: int, passes: int) -> list[float]:
        batches = self.batches(samples, batch_size)
        times = []
        for _ in range(passes):
            start = time.perf_counter()
            losses = self.step.run_batches(batches)
            self.native.sync([losses[-1], [v.value for v in self.model.trainable_variables]])
            times.append(time.perf_counter() - start)
        return times


def weights_of(model) -> dict[str, np.ndarray]:
    import keras

    return {v.path: np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64) for v in model.weights}


def judge(mine: dict, reference: dict | None, setting: Setting, steps: int) -> Parity:
    """The setting's loss, predictions and weights after ``steps`` steps against the default's.

    Each number is held to ``|a - r| <= atol + rtol |r|`` with the setting's dtype tolerance, the
    predictions to ``atol + rtol max|r|`` (a logit near zero carries the rounding of its whole sum).
    Mixed precision is judged on the loss and the predictions: the model computes the same
    function within its dtype's rounding. Its weights are reported, not judged, since an Adam
    update that rounds the other way moves a weight by a whole learning rate.
    """
    rtol, atol = setting.tolerance
    if reference is None:
        return Parity(NOT_CHECKED, steps, rtol, atol, message="the default settings did not train: nothing to hold to")
    if _weight_keys(mine) != _weight_keys(reference):
        return Parity(DIFFERS, steps, rtol, atol, message="the model's variables differ from the default's")
    loss, predictions, weights = differences(mine, reference, rtol, atol).values()
    judged = setting.dtype_policy == "float32"
    checks = {"loss": loss, "predictions": predictions} | ({"weights": weights} if judged else {})
    outside = [name for name, diff in checks.items() if not diff.within]
    if outside:
        verdict = DIFFERS
        message = f"outside rtol={rtol:g}, atol={atol:g} after {plural(steps, 'step')} in " + ", ".join(
            f"{name} ({checks[name].max_rel:.2g} relative)" for name in outside
        )
    else:
        verdict = SAME
        message = f"within rtol={rtol:g}, atol={atol:g} after {plural(steps, 'step')}"
        message += "" if judged else " (loss, predictions)"
    return Parity(
        verdict,
        steps,
        rtol,
        atol,
        loss_max_rel=loss.max_rel,
        predictions_max_rel=predictions.max_rel,
        weights_max_abs=weights.max_abs,
        weights_max_rel=weights.max_rel,
        weights_judged=judged,
        message=message,
    )


def _weight_keys(arrays: dict) -> list[str]:
    return sorted(k for k in arrays if k.startswith("w:"))


def differences(mine: dict, reference: dict, rtol: float, atol: float) -> dict[str, Diff]:
    """The epoch's loss, the predictions and the weights (all in one) against the reference's, each held to the
    tolerance as :func:`judge` says."""
    loss = Diff.of(mine["loss"], reference["loss"], rtol, atol)
    # Outputs are held to their own scale: a logit near zero carries the rounding of the whole sum.
    scale = float(np.nanmax(np.abs(reference["predictions"]), initial=0.0))
    predictions = Diff.of(mine["predictions"], reference["predictions"], 0.0, atol + rtol * scale)
    # Reported relative to that scale too, as judged (elementwise, an output near zero would blow it up).
    predictions.max_rel = predictions.max_abs / scale if scale else predictions.max_abs
    keys = _weight_keys(reference)
    weights = combine([Diff.of(mine[k], reference[k], rtol, atol) for k in keys]) or Diff(0.0, 0.0, True, 0)
    return {"loss": loss, "predictions": predictions, "weights": weights}


def needs_floor(parity: Parity | None) -> bool:
    """A float32 setting that left the tolerance with the same variables: the noise floor may still keep it."""
    return bool(parity and parity.verdict == DIFFERS and parity.weights_judged and parity.loss_max_rel is not None)


def judge_rounding(parity: Parity, mine: dict, reference: dict, twins: list[dict]) -> Parity:
    """A float32 setting outside the tolerance, against the noise floor of the default settings.

    ``twins``: the parity arrays of the default trained with every weight moved by 1 ulp before each step
    (compare's :func:`~backendlab.compare.floor.perturb`; at every step, not only at the start as compare
    does, since a compiled step rounds differently at every step: on the MLP at batch 256, a start moved
    once healed within 32 Adam steps, to 5e-7 in the weights, while moves at every step and the whole-step
    compiled run both ended 3.9e-3 from the default and 5e-7 from each other). How far a twin ends from
    the default is what rounding does to this model. The setting is ``within rounding`` when, at every
    step (the loss's running mean, as fit logs it) and in each of the loss, predictions and weights that
    left the tolerance, it is no further from the default than compare's ``floor.FACTOR`` times that floor
    (compare's :func:`~backendlab.compare.floor.judge`). A setting with ``steps_per_execution`` k logs
    every k-th step.
    """
    if not twins:
        return parity
    rtol, atol = parity.rtol, parity.atol
    ref = np.asarray(reference["running_loss"], np.float64)
    mine_steps = np.asarray(mine["running_loss"], np.float64)
    every = len(ref) // len(mine_steps) if len(mine_steps) and len(ref) % len(mine_steps) == 0 else 0
    at = slice(every - 1, None, every) if every else slice(0, 0)  # the steps both logged
    spread = floor.step_spread([np.asarray(t["running_loss"], np.float64)[at] for t in twins], ref[at])
    quantities = {}
    for name, diff in differences(mine, reference, rtol, atol).items():
        keys = _weight_keys(reference) if name == "weights" else [name]
        noise = floor.array_spread([{k: t[k] for k in keys} for t in twins], {k: reference[k] for k in keys})
        quantities[name] = (diff.max_abs, diff.within, noise)
    judged = floor.judge(
        np.abs(mine_steps[: len(ref[at])] - ref[at]), atol + rtol * np.abs(ref[at]), [spread], quantities, len(twins)
    )
    outside = {q: floor.ratio(d, f) for q, (d, ok, f) in quantities.items() if not ok}
    worst = max([judged.worst_ratio or 0.0, *outside.values()])
    where = [f"{q} {r:.2g}x" for q, r in outside.items()]
    if judged.worst_ratio:
        where.insert(0, f"losses at most {judged.worst_ratio:.2g}x, at step {judged.worst_step * (every or 1)}")
    noise = f"{judged.factor:g}x the noise floor (what moving every weight by 1 ulp at each step does to the default)"
    if judged.within:
        message = (
            f"outside rtol={rtol:g}, atol={atol:g} after {plural(parity.steps, 'step')}, but within rounding: "
            f"at every step and in every quantity no further from the default than {noise}: {', '.join(where)}"
        )
        return replace(parity, verdict=WITHIN_ROUNDING, floor_ratio=worst, message=message)
    beyond = [f"{q} at {r:.3g}x" for q, r in outside.items() if r > judged.factor]
    if (judged.worst_ratio or 0.0) > judged.factor:
        beyond.insert(0, f"step {judged.worst_step * (every or 1)} at {judged.worst_ratio:.3g}x its floor")
    return replace(parity, floor_ratio=worst, message=f"{parity.message}; beyond {noise}: {', '.join(beyond)}")


def train_parity(cell: dict, job: dict, native, setting: Setting, twin: int | None = None):
    """A fresh model trained for the parity steps: its loop, its data, the parity arrays, seconds to the first step.

    ``twin``: a seed; a fit setting's twin, every weight moved by 1 ulp before each step (:meth:`FitLoop.train_twin`).
    """
    model, loss, optimizer, samples = build(cell, job, native, setting)
    loop_class = StepLoop if setting.loop == "trainstep" else FitLoop
    loop = loop_class(model, loss, optimizer, setting, native)
    batch, steps = cell["batch_size"], job["parity_steps"]
    if twin is None:
        epoch_loss, first_s, running = loop.train(samples.head(steps * batch), batch)
    else:
        running, first_s = loop.train_twin(samples.head(steps * batch), batch, twin), None
        epoch_loss = running[-1]
    predictions = model.predict(samples.x[:batch], batch_size=batch, verbose=0)
    arrays = {"loss": np.asarray([epoch_loss]), "predictions": np.asarray(predictions, dtype=np.float64)}
    arrays |= {"running_loss": np.asarray(running, dtype=np.float64)}
    arrays |= {f"w:{k}": v for k, v in weights_of(model).items()}
    return loop, samples, arrays, first_s


def run_setting(cell: dict, job: dict, native, setting: Setting, row: TuneRow, reference: dict | None, save: Path):
    """Train, judge and time one setting, filling ``row``; returns the parity arrays."""
    batch, steps = cell["batch_size"], job["parity_steps"]
    loop, samples, arrays, row.first_step_s = train_parity(cell, job, native, setting)
    row.jit_resolved = loop.jit_resolved
    np.savez(save, **arrays)
    epoch_loss = float(arrays["loss"][0])
    if not np.isfinite(epoch_loss):
        raise FloatingPointError(f"the loss is {epoch_loss} after {plural(steps, 'step')}: training blew up")
    if row.is_default:
        row.parity = Parity(
            REFERENCE, steps, *setting.tolerance, message="the default settings: what others are held to"
        )
    else:
        row.parity = judge(arrays, reference, setting, steps)
    timed = steps_for(job["samples_per_repeat"], batch, setting.steps_per_execution)
    n = timed * batch
    times = loop.time(samples.head(n), batch, job["warmup"] + job["repeats"])[job["warmup"] :]
    rates = [n / t for t in times]
    row.samples_per_sec = statistics.median(rates)
    row.samples_per_sec_min, row.samples_per_sec_max = min(rates), max(rates)
    row.ms_per_step = 1000 * statistics.median(times) / timed
    return arrays


# --- the per-step profile ------------------------------------------------------------------


def profile_cell(cell: dict, job: dict, native, backend: str) -> Profile:
    """Each phase of an eager-dispatched step timed alone, beside the native loop's forward pass and step."""
    import keras

    from backendlab.backends import impl

    setting = Setting(jit_compile=False)
    model, loss, optimizer, samples = build(cell, job, native, setting)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=False)
    batch = cell["batch_size"]
    x, y = samples.x, samples.y  # the per-phase profile times the loss without the data's sample weights
    xb, yb = keras.ops.convert_to_tensor(x[:batch]), keras.ops.convert_to_tensor(y[:batch])
    phases = impl().profile_phases(model, loss, optimizer, xb, yb, PROFILE_STEPS)
    y_pred = model(xb)
    metrics_ms = median_ms(
        lambda: model.compute_metrics(xb, yb, y_pred, sample_weight=None), native.sync, PROFILE_STEPS
    )
    loss_value = keras.ops.mean(y_pred)
    native.sync(loss_value)
    host_ms = median_ms(lambda: float(keras.ops.convert_to_numpy(loss_value)), native.sync, PROFILE_STEPS)
    profile = Profile(backend, cell["model"], batch, **phases, metrics_ms=metrics_ms, host_sync_ms=host_ms)
    if cell["model"] in SHAPES and SHAPES[cell["model"]].native:
        shape = SHAPES[cell["model"]]
        net = getattr(native, f"build_{cell['model']}")(shape, job["run"]["seed"])
        (nx, ny), *_ = native.as_batches(x[:batch], y[:batch], batch)
        predict, train = native.make_predict_step(net), native.make_train_step(net)
        profile.native_forward_ms = median_ms(lambda: predict(nx), native.sync, PROFILE_STEPS)
        profile.native_step_ms = median_ms(lambda: train(nx, ny), native.sync, PROFILE_STEPS)
    return profile


# --- the job -------------------------------------------------------------------------------


def winners(rows: list[TuneRow], default: Setting) -> list[Setting]:
    """Per axis, the fastest setting that changes only that axis, kept parity and beat the default."""
    base = next(r for r in rows if r.is_default)
    best: dict[str, TuneRow] = {}
    for row in rows:
        if not (row.ok and row.parity and row.parity.kept) or row.is_default:
            continue
        changed = [k for k, v in row.settings.items() if v != getattr(default, k)]
        if len(changed) != 1 or row.samples_per_sec <= (base.samples_per_sec or 0):
            continue
        if changed[0] not in best or row.samples_per_sec > best[changed[0]].samples_per_sec:
            best[changed[0]] = row
    fastest = sorted(best.values(), key=lambda r: -r.samples_per_sec)
    return [Setting.from_dict(r.settings) for r in fastest]


class Tuner:
    """One worker's settings on each cell in turn, keeping what it measured in ``partial.json`` as it goes."""

    def __init__(self, job: dict, workdir: Path, progress, native, backend: str, thread_error: str):
        self.job, self.workdir, self.progress, self.native = job, workdir, progress, native
        self.backend, self.thread_error = backend, thread_error
        self.device_kind = "gpu" if any(d.split(":")[0].lower() in ("gpu", "cuda") for d in native.devices()) else "cpu"
        self.rows: list[TuneRow] = []
        self.natives: list[NativeRow] = []
        self.profiles: list[Profile] = []
        self.twins: dict[int, list[dict]] = {}  # cell -> the default's perturbed twins' parity arrays
        self.start = time.perf_counter()
        self.total = len(job["cells"]) * (len(job["settings"]) + 2)
        self.done = 0
        (workdir / "parity").mkdir(exist_ok=True)

    def stage(self, text: str) -> None:
        self.progress(self.done, self.total, stage=text, force=True)

    def save(self) -> None:
        write_json(self.workdir / PARTIAL, {"rows": self.rows, "native": self.natives, "profiles": self.profiles})

    def over_budget(self) -> bool:
        return bool(self.job["budget_s"]) and time.perf_counter() - self.start > self.job["budget_s"]

    def twins_of(self, ci: int, cell: dict, default: Setting) -> list[dict]:
        """The default's perturbed twins on this cell (compare.floor), trained the first time a setting needs
        them, or read from the files of the worker that wrote the reference."""
        if ci not in self.twins:
            paths = (self.job.get("twins") or [[]] * (ci + 1))[ci]
            if paths:
                self.twins[ci] = [dict(np.load(p)) for p in paths]
                return self.twins[ci]
            self.stage(f"{cell['model']} bs={cell['batch_size']}: noise floor, {floor.TWINS} perturbed twins")
            self.twins[ci] = []
            for seed in range(1, floor.TWINS + 1):
                arrays = train_parity(cell, self.job, self.native, default, twin=seed)[2]
                np.savez(self.workdir / "parity" / f"cell{ci}_twin{seed}.npz", **arrays)
                self.twins[ci].append(arrays)
        return self.twins[ci]

    def measure(
        self, ci: int, cell: dict, setting: Setting, reference: dict | None, index: int, default: Setting
    ) -> tuple[TuneRow, dict]:
        """One setting's row; its parity arrays (empty when it did not train)."""
        job, backend = self.job, self.backend
        row = TuneRow(backend, cell["model"], cell["batch_size"], setting.to_dict(), setting.label)
        row.is_default = index == 0 and not job.get("references")
        arrays: dict = {}
        why_not = applicable(setting, backend, self.device_kind) or self.thread_error
        if why_not:
            row.status, row.note = "not_applicable", why_not
        elif self.over_budget() and not row.is_default:
            row.status, row.note = "skipped", f"over the budget of {job['budget_s']:g} s for this backend"
        else:
            self.stage(f"{cell['model']} bs={cell['batch_size']}: {setting.label}")
            path = self.workdir / "parity" / f"cell{ci}_{index}.npz"
            try:
                arrays = run_setting(cell, job, self.native, setting, row, reference, path)
            except Exception as exc:  # one setting's failure must not lose the others
                row.status, row.note = "failed", one_line(exc)
            if row.ok and needs_floor(row.parity):
                try:
                    row.parity = judge_rounding(row.parity, arrays, reference, self.twins_of(ci, cell, default))
                except Exception as exc:  # the fixed tolerance's verdict stands
                    row.parity.message += f"; the noise floor could not be measured: {one_line(exc)}"
        row.threads = self.native.threads()
        row.peak_rss_mb = peak_rss_mb()
        row.device_peak_mb = self.native.device_peak_mb()
        self.rows.append(row)
        self.done += 1
        self.save()
        return row, arrays

    def auto_jit(self, cell: dict) -> bool:
        """What ``compile(jit_compile="auto")`` makes of this model on this backend and device."""
        default = Setting(jit_compile="auto")
        try:
            model, loss, optimizer, _ = build(cell, self.job, self.native, default)
            model.compile(optimizer=optimizer, loss=loss, jit_compile="auto")
            return bool(model.jit_compile)
        except Exception:  # the default's own row will say what is wrong with the model
            return False

    def cell(self, ci: int, cell: dict) -> None:
        job = self.job
        if job["native"] and cell["model"] in SHAPES and SHAPES[cell["model"]].native:
            self.stage(f"{cell['model']} bs={cell['batch_size']}: native loop")
            self.natives.append(run_native(cell, job, self.native))
        reference = None
        if job.get("references"):
            with np.load(job["references"][ci]) as f:
                reference = dict(f)
        settings = [Setting.from_dict(s) for s in job["settings"]]
        settings = resolved(settings, self.auto_jit(cell))
        cell_rows = []
        for index, setting in enumerate(settings):
            row, arrays = self.measure(ci, cell, setting, reference, index, settings[0])
            cell_rows.append(row)
            if row.is_default and arrays:
                reference = arrays
        if job["search"] and cell_rows[0].ok:
            chosen = winners(cell_rows, settings[0])
            together = combine_settings(settings[0], chosen, self.backend, self.device_kind)
            if together not in settings:
                self.measure(ci, cell, together, reference, len(settings), settings[0])
        if job["profile"] and not self.thread_error:
            self.stage(f"{cell['model']} bs={cell['batch_size']}: per-step profile")
            try:
                self.profiles.append(profile_cell(cell, job, self.native, self.backend))
            except Exception as exc:  # the profile explains; its failure must not lose the timings
                self.stage(f"profile failed: {one_line(exc)}")
            self.save()
        self.done = (ci + 1) * (len(job["settings"]) + 2)


def handle(job: dict, workdir: Path, progress) -> dict:
    backend = ensure_backend()
    native = importlib.import_module(f"backendlab.bench.native.{backend.name}")  # torch before tensorflow
    thread_error = ""
    intra, inter = job.get("threads") or (None, None)
    if intra is not None:
        try:
            native.set_threads(intra, inter)
        except ValueError as exc:
            thread_error = str(exc)
    import keras  # noqa: F401  (after the thread counts are set)

    tuner = Tuner(job, workdir, progress, native, backend.name, thread_error)
    for ci, cell in enumerate(job["cells"]):
        tuner.cell(ci, cell)
    progress(tuner.total, tuner.total, stage="done", force=True)
    return to_jsonable({"rows": tuner.rows, "native": tuner.natives, "profiles": tuner.profiles})


def run_native(cell: dict, job: dict, native) -> NativeRow:
    from backendlab.bench.results import BenchRow

    bench = BenchRow(ensure_backend().name, "native", cell["model"], "fit", cell["batch_size"], "native", 1, None)
    out = NativeRow(bench.backend, cell["model"], cell["batch_size"], native.COMPILER)
    try:
        bench = native_cell({**cell, "mode": "fit"}, job, native, bench)
    except Exception as exc:
        out.status, out.note = "failed", one_line(exc)
        return out
    out.samples_per_sec, out.ms_per_step = bench.samples_per_sec, bench.ms_per_step
    out.samples_per_sec_min, out.samples_per_sec_max = bench.samples_per_sec_min, bench.samples_per_sec_max
    return out
