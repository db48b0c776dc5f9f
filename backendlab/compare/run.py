"""``backendlab compare``: train one model on every backend from the same start, and compare.

The orchestrator (this module) imports no framework. It keeps one warm worker per backend
(:class:`~backendlab.workers.runner.WorkerPool`) for every job of the run:

0. every worker imports its framework at once (the imports overlap), and training waits
   until all are ready, so that each backend trains with the machine to itself;
1. one after another, each trains: the first builds the model and saves the starting
   weights (``initial.weights.h5``), every later one loads them, and every one sees the
   same batches in the same order (backendlab's seeded NumPy generator);
2. side by side, each then loads every backend's saved ``.keras`` file and predicts (the
   portability matrix); Keras's numpy backend, where it can run the model, predicts with
   the starting weights as an independent reference;
3. where a backend diverges (or everywhere, with ``locate``), the step where it parts is
   taken apart on it and on the reference, from the same replayed state, phase by phase
   (:mod:`backendlab.compare.probe`, :func:`backendlab.compare.locate.locate`); where only
   evaluation differs, evaluate is taken apart instead; where the reference is the odd one
   out, a backend that agrees with the others takes its place;
4. everything is compared against the reference backend and written, atomically, after
   every step: a Ctrl-C leaves every finished backend's results readable.

PyTorch with ``--devices N`` trains under torchrun, and every backend with ``--processes N`` in N
processes (:mod:`backendlab.workers.launch`), in processes of their own for that job.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backendlab.backends import ALL_BACKENDS, REFERENCE_BACKENDS, Wording, plan
from backendlab.callables import SENT_FOLDER, send_run
from backendlab.compare.floor import TWINS
from backendlab.compare.known import DATA_PARALLEL, model_config
from backendlab.compare.known import match as known_match
from backendlab.compare.locate import EVALUATE_PHASES, Divergence, evaluation_window, locate, phase_of, phases_table
from backendlab.compare.probe import handle as probe_handle
from backendlab.compare.results import BackendReport, CompareOptions, CompareReport
from backendlab.compare.verdict import TRAIN_ARRAYS, LoadedRun, TrainedRun, build_report, evaluation_stage
from backendlab.compare.worker import handle
from backendlab.data import check_data
from backendlab.errors import UsageError
from backendlab.export.formats import FORMATS as EXPORT_FORMATS
from backendlab.export.formats import ROUTES as EXPORT_ROUTES
from backendlab.export.formats import failed_cell, missing_packages
from backendlab.models import check_model, default_data
from backendlab.results import check_writable, read_json, write_json
from backendlab.text import plural
from backendlab.workers.protocol import MODEL, PROBE, RESULT, Handler, Job, Outcome
from backendlab.workers.runner import WorkerPool

INITIAL_WEIGHTS = "initial.weights.h5"

#: An evaluation probe records every layer's outputs for at most this many test samples (whole batches).
EVALUATE_SAMPLES = 512


# --- planning -------------------------------------------------------------------------


#: compare's words for the backends it cannot run: those named on its command line (``--backends``).
BACKEND_WORDING = Wording(
    unknown="unknown backend {name!r} in --backends: valid backends are {valid}",
    twice="--backends names a backend twice: {names}",
    empty=None,
    separator=",",
)


def train_job(opts: CompareOptions, initial: Path, make_initial: bool) -> dict:
    """Train on the shared batches from the shared start: made by the first worker, loaded by the others."""
    return {
        "kind": "train",
        "run": opts.run.to_dict(),
        "initial_weights": str(initial.resolve()),
        "make_initial": make_initial,
        "exports": opts.exports if opts.portability else [],
        "export_atol": opts.export_atol,
    }


def twin_job(opts: CompareOptions, initial: Path, seed: int) -> dict:
    """A perturbed twin of the shared start (see :mod:`backendlab.compare.floor`): trained, measured, not saved."""
    return {**train_job(opts, initial, make_initial=False), "kind": "twin", "exports": [], "twin_seed": seed}


def predict_job(opts: CompareOptions, models: dict[str, str], initial: Path | None) -> dict:
    """Load each backend's saved ``.keras`` file and predict; with ``initial``, also predict from the shared start."""
    return {
        "kind": "predict",
        "run": opts.run.to_dict(),
        "models": models,
        "initial_weights": str(initial.resolve()) if initial else None,
    }


def export_job(opts: CompareOptions, exports: dict[str, dict]) -> dict:
    """Export other backends' saved models: saver -> {"model", "predictions" (its trained ones), "formats"}."""
    return {"kind": "export", "run": opts.run.to_dict(), "exports": exports, "export_atol": opts.export_atol}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _arrays(folder: Path, names) -> dict[str, dict[str, np.ndarray]]:
    return {name: _load_npz(folder / f"{name}.npz") for name in names if (folder / f"{name}.npz").exists()}


def _not_located(step: int | None, why: str, during: str = "training") -> tuple[dict, list, dict]:
    return Divergence.nowhere(step, 0.0, 0.0, f"not located: {why}", during).to_dict(), [], {}


# --- the run --------------------------------------------------------------------------


class Compare:
    """One compare run; ``run()`` returns the report and leaves it, and the files, in ``out``.

    It imports no framework. ``pool``: warm workers to run the jobs on, kept warm after the
    run (a test session's, or :func:`~backendlab.workers.runner.shared_pool`); None starts a pool for
    this run and stops it at the end. ``env``: environment variables every job of this run
    sees, read while it runs (not those a framework reads once at import, such as XLA_FLAGS).
    """

    def __init__(
        self,
        opts: CompareOptions,
        on_event: Callable[[str, str, dict], None] | None = None,
        pool: WorkerPool | None = None,
        env: dict[str, str] | None = None,
    ):
        # Bad input leaves no folder behind where there was none (see run()).
        self.fresh = not (Path(opts.out).is_dir() and any(Path(opts.out).iterdir()))
        # A model or data given as a Python object goes to the workers as a file in --out (backendlab.callables).
        run = send_run(opts.run, Path(opts.out) / SENT_FOLDER)
        run = run.replace(data=run.data or default_data(run.model)).check()
        check_model(run.model)  # names and files now: a worker would tell them after every import
        check_data(run.data)
        self.opts = dataclasses.replace(opts, run=run)
        self.out = Path(opts.out)
        self.on_event = on_event or (lambda backend, stage, info: None)
        self.pool = pool
        self.env = dict(env or {})
        backends = plan(opts.backends, skip_missing=True, wording=BACKEND_WORDING)
        self.runnable, self.named_skip = backends.run, backends.named and bool(backends.skipped)
        self.skipped = {n: BackendReport(n, "skipped", message=why) for n, why in backends.skipped.items()}
        if opts.reference is not None and opts.reference not in self.runnable:
            raise UsageError(
                f"--reference {opts.reference!r} is not among the backends that can run: {', '.join(self.runnable)}"
            )
        self.reference = opts.reference or self.runnable[0]
        # The reference runs first: it makes the starting weights everyone loads.
        self.runnable.sort(key=lambda n: n != self.reference)
        self.loaders = [*self.runnable, *REFERENCE_BACKENDS] if opts.portability else []
        self.trained: dict[str, TrainedRun] = {}
        self.loaded: dict[str, LoadedRun] = {}
        # saver -> format -> the cell of an export its own backend could not make, made on another (reroute_exports)
        self.rerouted: dict[str, dict[str, dict]] = {}
        # backend -> (Divergence as a dict, phases table, the layers the probe reached and did not)
        self.located: dict[str, tuple[dict, list, dict]] = {}
        self.twins: dict[str, list[TrainedRun]] = {}  # backend -> its perturbed twins (compare.floor)
        self.import_s: dict[str, float | None] = {}
        self.imports_wall_s = 0.0  # from the start until every worker was ready: the imports, overlapping
        self.interrupted = False
        self.started = time.perf_counter()
        check_writable(self.out, "--out", folder=True)  # before any worker starts

    def _devices(self, backend: str) -> int:
        """The devices a backend's warm worker has: the run's, except where a launcher starts the processes."""
        return 1 if ALL_BACKENDS[backend].launcher else self.opts.run.devices

    def _job(self, backend: str, payload: dict, folder: Path, handler: Handler = handle, **where: int) -> Job:
        """A job of this run; ``where``: its devices and processes (default: the backend's warm worker's)."""
        self.on_event(backend, "start", {"kind": payload["kind"]})
        return Job(
            backend,
            handler,
            payload,
            folder,
            self.opts.timeout,
            on_progress=lambda p: self.on_event(backend, "progress", p),
            env=self.env,
            devices=where.get("devices", self._devices(backend)),
            processes=where.get("processes", 1),
        )

    def _ended(self, outcome: Outcome) -> Outcome:
        self.on_event(outcome.backend, "end", {"status": outcome.status, "message": outcome.message})
        if outcome.status == "usage" and not any(t.outcome.ok for t in self.trained.values()):
            # The first backend to try found the model or data wrong: that is bad input, not a backend's fault.
            raise UsageError(outcome.message)
        return outcome

    def start_workers(self) -> None:
        """Start every worker the run needs, all at once, and wait until each has imported its framework."""
        wanted = list(dict.fromkeys([*self.runnable, *self.loaders]))
        fresh = {b for b in wanted if not self._warm(b)}
        for backend in wanted:
            self.pool.start([backend], self._devices(backend))
        for backend in wanted:
            self.on_event(backend, "start", {"kind": "import"})
        for backend in wanted:
            ready = self.pool.wait_ready([backend], self._devices(backend))[backend]
            self.import_s[backend] = ready if backend in fresh else 0.0
            self.on_event(backend, "end", {"status": "ready" if ready is not None else "failed", "message": ""})
        self.imports_wall_s = time.perf_counter() - self.started

    def _warm(self, backend: str) -> bool:
        worker = self.pool.workers.get((backend, self._devices(backend)))
        return worker is not None and worker.alive and worker.import_s is not None

    def train_all(self) -> None:
        initial = self.out / INITIAL_WEIGHTS
        for backend in self.runnable:
            payload = train_job(self.opts, initial, make_initial=not initial.exists())
            folder = self.out / backend
            # torchrun's ranks, or --processes: the pool starts processes of their own for this job
            run = self.opts.run
            job = self._job(backend, payload, folder, devices=run.devices, processes=run.processes)
            outcome = self.pool.run_many([job])[0]
            self.trained[backend] = TrainedRun(self._ended(outcome), _arrays(folder, TRAIN_ARRAYS))
            self.write()

    def floor_targets(self) -> list[str]:
        """The backends whose twins measure the noise floor: those that left the exact tolerance, and the reference.

        Only where the exact check failed, so a run that agrees costs nothing more; only on
        backendlab's own batches of arrays, which every twin is fed again in the same order.
        """
        if not self.opts.floor:
            return []
        report = self.report()  # after portability: the yardstick is the reference, or where it is the odd one out,
        yardstick = report.reference  # one of the others (compare.verdict.odd_one_out)
        ref = report.backends.get(yardstick)
        if ref is None or ref.status != "ok" or report.criterion.kind != "exact":
            return []
        if report.batches and (report.batches["kind"] != "arrays" or not report.batches["identical"]):
            return []
        outside = [
            name
            for name, r in report.backends.items()
            if name != yardstick
            and r.status == "ok"
            and r.verdict == "diverge"
            and r.initial_checksum == ref.initial_checksum
        ]
        return [yardstick, *outside] if outside else []

    def floor_all(self) -> None:
        """Train each target backend's perturbed twins of the shared start, on the same batches."""
        initial = self.out / INITIAL_WEIGHTS
        run = self.opts.run
        for backend in self.floor_targets():
            for seed in range(1, TWINS + 1):
                folder = self.out / "floor" / f"{backend}-{seed}"
                job = self._job(
                    backend, twin_job(self.opts, initial, seed), folder, devices=run.devices, processes=run.processes
                )
                outcome = self._ended(self.pool.run_many([job])[0])
                self.twins.setdefault(backend, []).append(TrainedRun(outcome, _arrays(folder, TRAIN_ARRAYS)))
        if self.twins:
            self.write()

    def locate_targets(self, report: CompareReport) -> dict[str, int | str]:
        """backend -> what to take apart: the training step where its losses first left the tolerance (or the
        first), or ``evaluate`` or ``predict`` where only they differ (:func:`~backendlab.compare.verdict.
        evaluation_stage`). Each is measured against ``report.reference``: the odd one out's place, if the
        reference was it."""
        ref = report.backends.get(report.reference)
        if ref is None or ref.status != "ok" or self.opts.run.replicas > 1:
            return {}
        if report.batches and not report.batches["identical"]:
            return {}
        exact = report.criterion.kind == "exact"
        targets = {
            name: (evaluation_stage(r) if r.verdict == "diverge" else None) or r.first_divergent_step or 1
            for name, r in report.backends.items()
            if name != report.reference
            and r.status == "ok"
            and (self.opts.locate or (exact and r.verdict == "diverge"))
        }
        if report.batches and report.batches["kind"] != "arrays":  # the step's probe replays backendlab's arrays
            targets = {name: target for name, target in targets.items() if isinstance(target, str)}
        return targets

    def locate_all(self) -> None:
        """Take apart, on the reference and on each backend to locate, the step where it parts.

        The state just before that step is replayed once on the reference and loaded everywhere:
        both sides start the step from the same numbers, so what differs is that step's doing.
        The step probed is the one before the losses left the tolerance (its update made the
        weights they were computed from), or the first step; where nothing stands out in it, the
        step whose loss left is taken apart too: its own forward pass or loss may be what parts
        (a loss that saturates only once training has moved the weights). Where training agrees
        and only evaluation or prediction differs, that is taken apart instead (:meth:`locate_evaluation`).
        """
        report = self.report()
        yardstick = report.reference  # the reference, or, where it is the odd one out, one of the others
        self.explain_data_parallel(report)
        by_step: dict[int, list[str]] = {}
        evaluated: dict[str, str] = {}
        targets = self.locate_targets(report)
        for name, target in targets.items():
            if isinstance(target, str):
                evaluated[name] = target
            else:
                by_step.setdefault(max(target - 1, 1), []).append(name)
        if evaluated:
            threshold, compute_dtype = report.settings["locate_threshold"], report.criterion.compute_dtype
            self.locate_evaluation(yardstick, evaluated, threshold, compute_dtype)
        for step, names in by_step.items():
            self._locate_step(report, yardstick, step, names)
        again: dict[int, list[str]] = {}
        for step, names in by_step.items():
            for name in names:
                if self.located[name][0]["phase"] is None and targets[name] > step and self.located[name][1]:
                    again.setdefault(targets[name], []).append(name)
        for step, names in again.items():
            first = {name: self.located[name] for name in names}
            self._locate_step(report, yardstick, step, names)
            for name in names:  # nothing there either: the first look's account stands
                if self.located[name][0]["phase"] is None:
                    self.located[name] = first[name]
        self.write()

    def explain_data_parallel(self, report: CompareReport) -> None:
        """Under --devices or --processes N no step is taken apart (a probe runs one device's step): a backend
        that diverges is said to be not located, and looked up in the catalog by the model alone."""
        run = self.opts.run
        if run.replicas == 1:
            return
        how = f"--processes {run.processes}" if run.processes > 1 else f"--devices {run.devices}"
        why = f"not located: compare takes apart one device's step, and this run trained under {how}"
        for name, r in report.backends.items():
            if name != report.reference and r.status == "ok" and r.verdict == "diverge":
                divergence = Divergence.nowhere(None, 0.0, 0.0, why, DATA_PARALLEL).to_dict()
                divergence["known"] = self.known(divergence, name, report.reference)
                self.located[name] = (divergence, [], {})

    def _locate_step(self, report: CompareReport, yardstick: str, step: int, names: list[str]) -> None:
        """Probe ``step`` (1-based) on ``yardstick`` and on each of ``names`` from the same replayed state."""
        threshold, compute_dtype = report.settings["locate_threshold"], report.criterion.compute_dtype
        folder = self.out / "locate" / f"step-{step}"
        state = folder / "state.npz"
        replay = {
            "kind": "replay",
            "run": self.opts.run.to_dict(),
            "initial_weights": str((self.out / INITIAL_WEIGHTS).resolve()),
            "steps": step - 1,
            "state": str(state.resolve()),
        }
        done = self._ended(self.pool.run_many([self._job(yardstick, replay, folder / "replay", probe_handle)])[0])
        if not done.ok:
            for name in names:
                self.located[name] = _not_located(step, f"replaying {plural(step - 1, 'step')} failed: {done.message}")
            return
        probe = {"kind": "probe", "run": self.opts.run.to_dict(), "state": str(state.resolve()), "step": step - 1}
        jobs = [self._job(b, probe, folder / b, probe_handle) for b in [yardstick, *names]]
        outcomes = {o.backend: self._ended(o) for o in self.pool.run_many(jobs)}
        ref = outcomes[yardstick]
        for name in names:
            mine = outcomes[name]
            if not (ref.ok and mine.ok):
                why = next(o.message for o in (ref, mine) if not o.ok)
                self.located[name] = _not_located(step, f"probing step {step} failed: {why}")
                continue
            ref_arrays, mine_arrays = _load_npz(folder / yardstick / PROBE), _load_npz(folder / name / PROBE)
            found = locate(
                ref_arrays,
                ref.result,
                mine_arrays,
                mine.result,
                step=step,
                threshold_rel=threshold,
                compute_dtype=compute_dtype,
            )
            divergence = found.to_dict()
            divergence["known"] = self.known(divergence, name, yardstick)
            self.located[name] = (divergence, phases_table(ref_arrays, mine_arrays), mine.result["layers"])

    def locate_evaluation(self, yardstick: str, stages: dict[str, str], threshold: float, compute_dtype: str) -> None:
        """Take apart ``evaluate`` (or ``predict``: its forward pass alone) on the test set, on ``yardstick``
        and on each backend of ``stages``, all from ``yardstick``'s trained weights: training agreed, so what
        differs is evaluation's doing. The layers' outputs are recorded for at most :data:`EVALUATE_SAMPLES`
        test samples, from the batch whose predictions differ most."""
        weights = self.out / yardstick / "weights.npz"
        theirs = self.trained[yardstick].arrays.get("predictions", {})
        samples = next((len(a) for a in theirs.values() if np.ndim(a)), 0)
        by_window: dict[tuple[int, int], list[str]] = {}
        for name in stages:
            mine = self.trained[name].arrays.get("predictions", {})
            window = evaluation_window(mine, theirs, samples, self.opts.run.batch_size, EVALUATE_SAMPLES)
            by_window.setdefault(window, []).append(name)
        for i, (window, names) in enumerate(by_window.items()):
            folder = self.out / "locate" / ("evaluate" if i == 0 else f"evaluate-{i}")
            job = {"kind": "evaluate", "run": self.opts.run.to_dict(), "weights": str(weights.resolve())}
            if window[1] > window[0]:
                job["window"] = list(window)
            jobs = [self._job(b, job, folder / b, probe_handle) for b in [yardstick, *names]]
            outcomes = {o.backend: self._ended(o) for o in self.pool.run_many(jobs)}
            ref = outcomes[yardstick]
            for name in names:
                mine, during = outcomes[name], stages[name]
                if not (ref.ok and mine.ok):
                    why = next(o.message for o in (ref, mine) if not o.ok)
                    self.located[name] = _not_located(None, f"probing {during} failed: {why}", during)
                    continue
                ref_arrays, mine_arrays = _load_npz(folder / yardstick / PROBE), _load_npz(folder / name / PROBE)
                if during == "predict":  # predict's forward pass is evaluate's, without the loss and metrics
                    ref_arrays = {k: v for k, v in ref_arrays.items() if phase_of(k) == "forward"}
                phases = ("forward",) if during == "predict" else EVALUATE_PHASES
                found = locate(
                    ref_arrays,
                    ref.result,
                    mine_arrays,
                    mine.result,
                    step=None,
                    threshold_rel=threshold,
                    compute_dtype=compute_dtype,
                    during=during,
                )
                table = phases_table(ref_arrays, mine_arrays, phases)
                self.located[name] = (found.to_dict(), table, mine.result["layers"])
        self.write()

    def known(self, divergence: dict, backend: str, yardstick: str) -> str | None:
        """The catalog's id for a located divergence (compare.known), from the model's saved config."""
        saved = [self.out / b / MODEL for b in (yardstick, backend) if (self.out / b / MODEL).exists()]
        return known_match(divergence, backend, yardstick, model_config(saved[0]) if saved else None)

    def portability_all(self) -> None:
        """Every loader loads every saved model, side by side: this is not timed."""
        saved = {
            n: str((self.out / n / MODEL).resolve())
            for n, t in self.trained.items()
            if t.outcome.ok and (self.out / n / MODEL).exists()
        }
        if not saved:
            return
        trained_ok = [n for n, t in self.trained.items() if t.outcome.ok]
        loaders = [n for n in self.loaders if n in REFERENCE_BACKENDS or n in trained_ok]
        jobs = []
        for loader in loaders:
            # Only a reference-only backend predicts from the shared start: it is the independent one.
            initial = self.out / INITIAL_WEIGHTS if loader in REFERENCE_BACKENDS else None
            jobs.append(self._job(loader, predict_job(self.opts, saved, initial), self.out / "portability" / loader))
        by_devices: dict[int, list[Job]] = {}
        for job in jobs:
            by_devices.setdefault(job.devices, []).append(job)
        for group in by_devices.values():
            for job, outcome in zip(group, self.pool.run_many(group), strict=True):
                predictions = {}
                if self._ended(outcome).ok:
                    files = outcome.result["predictions"]
                    predictions = {saver: _load_npz(job.workdir / name) for saver, name in files.items()}
                self.loaded[job.backend] = LoadedRun(outcome, predictions)
        self.write()

    def reroute_exports(self) -> None:
        """Each export that failed on the backend that trained the model is made on another, in the order of
        ``ROUTES``: one that loaded the model's ``.keras`` file and predicted as its trainer does (its
        portability cell agrees) and has the format's exporter installed. The export is checked against the
        trainer's own predictions. Where that route fails too, the next is tried."""
        report = self.report()
        own = {
            (saver, fmt): cell
            for saver, row in report.portability.items()
            for fmt, cell in row.items()
            if fmt in EXPORT_FORMATS and cell["status"] == "failed"
        }
        tried: dict[tuple[str, str], dict[str, str]] = {key: {} for key in own}  # route -> why it failed
        pending = set(own)
        for attempt in itertools.count(1):
            by_route: dict[str, dict[str, list[str]]] = {}
            for saver, fmt in sorted(pending):
                route = self._route(report, saver, fmt, tried[saver, fmt])
                if route is None:  # no backend left to try: the trainer's own failure stands
                    pending.discard((saver, fmt))
                    if tried[saver, fmt]:
                        self.rerouted.setdefault(saver, {})[fmt] = {**own[saver, fmt], "tried": tried[saver, fmt]}
                else:
                    by_route.setdefault(route, {}).setdefault(saver, []).append(fmt)
            if not by_route:
                break
            folder = self.out / "portability" / f"exports-{attempt}"
            jobs = [
                self._job(r, export_job(self.opts, self._exports(todo)), folder / r) for r, todo in by_route.items()
            ]
            for job, outcome in zip(jobs, self.pool.run_many(jobs), strict=True):
                self._ended(outcome)
                for saver, fmts in by_route[job.backend].items():
                    for fmt in fmts:
                        cell = outcome.result["cells"][saver][fmt] if outcome.ok else failed_cell(outcome.message)
                        if cell["status"] == "failed":
                            tried[saver, fmt][job.backend] = cell["message"]
                        else:
                            pending.discard((saver, fmt))
                            routed = {"route": job.backend, "own_failure": own[saver, fmt]["message"]}
                            self.rerouted.setdefault(saver, {})[fmt] = {**cell, **routed}
        self.write()

    @staticmethod
    def _route(report: CompareReport, saver: str, fmt: str, tried: dict[str, str]) -> str | None:
        """The next backend to export ``saver``'s model as ``fmt`` on, or None where none is left."""
        return next(
            (
                b
                for b in EXPORT_ROUTES[fmt]
                if b != saver
                and b not in tried
                and report.portability[saver].get(b, {}).get("status") == "agree"
                and not missing_packages(fmt, b)
            ),
            None,
        )

    def _exports(self, formats: dict[str, list[str]]) -> dict[str, dict]:
        """An export job's work: saver -> its model file, the predictions it trained to make, and the formats."""
        folder = {saver: (self.out / saver).resolve() for saver in formats}
        return {
            saver: {
                "model": str(folder[saver] / MODEL),
                "predictions": str(folder[saver] / "predictions.npz"),
                "formats": f,
            }
            for saver, f in formats.items()
        }

    def _collect_finished(self) -> None:
        """After Ctrl-C: a worker that wrote its result finished, even if we had not read it yet."""
        for backend in self.runnable:
            result = self.out / backend / RESULT
            if backend not in self.trained and result.exists():
                outcome = Outcome(backend, "ok", 0, 0.0, read_json(result), "", "")
                self.trained[backend] = TrainedRun(outcome, _arrays(self.out / backend, TRAIN_ARRAYS))

    def timing(self) -> dict:
        """Where the run's time went: each backend's import and training, and what compare added besides.

        The imports overlap, so ``overhead_s`` is the wall time after every worker was ready
        (``imports_wall_s``) that training does not explain: building, predicting, saving, loading.
        """
        imports = {b: s for b, s in self.import_s.items() if s is not None}
        train = {
            b: t.outcome.result["train_time_s"]
            for b, t in self.trained.items()
            if t.outcome.ok and t.outcome.result.get("train_time_s") is not None
        }
        twins = {
            b: sum(t.outcome.result["train_time_s"] for t in runs if t.outcome.ok) for b, runs in self.twins.items()
        }
        wall = time.perf_counter() - self.started
        return {
            "wall_s": wall,
            "import_s": imports,
            "imports_wall_s": self.imports_wall_s,
            "train_s": train,
            "twins_s": twins,  # training the noise floor's twins (compare.floor), only where the exact check failed
            "overhead_s": wall - self.imports_wall_s - sum(train.values()) - sum(twins.values()),
        }

    def report(self) -> CompareReport:
        return build_report(
            self.opts,
            data=self.opts.run.data,
            reference=self.reference,
            planned=self.runnable,
            trained=self.trained,
            skipped=self.skipped,
            named_skip=self.named_skip,
            loaded=self.loaded,
            references=REFERENCE_BACKENDS,
            interrupted=self.interrupted,
            located=self.located,
            rerouted=self.rerouted,
            twins=self.twins,
            import_s=self.import_s,
            timing=self.timing(),
        )

    def write(self) -> CompareReport:
        report = self.report()
        write_json(self.out / "report.json", report)
        return report

    def _run_jobs(self) -> None:
        owned = self.pool is None
        self.pool = self.pool or WorkerPool()
        try:
            self.start_workers()
            self.train_all()
            if self.opts.portability:  # first: Keras's numpy backend breaks ties over whom to locate
                self.portability_all()
                self.reroute_exports()
            self.floor_all()  # where the exact check failed against the yardstick the report now names
            self.locate_all()
        except KeyboardInterrupt:
            self.interrupted = True
            self._collect_finished()
            self.write()
            raise
        finally:
            if owned:
                self.pool.close()
                self.pool = None

    def _clear(self) -> None:
        """A reused folder must not lend an earlier run's files to this one."""
        for name in [*self.runnable, "portability", "floor"]:
            shutil.rmtree(self.out / name, ignore_errors=True)
        for name in (INITIAL_WEIGHTS, "report.json", "report.md", "loss_curves.png"):
            (self.out / name).unlink(missing_ok=True)

    def run(self) -> CompareReport:
        self.started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self._clear()
        try:
            self._run_jobs()
        except UsageError:
            if self.fresh:  # the model or data was wrong: the one error line is the result, not a folder
                shutil.rmtree(self.out, ignore_errors=True)
            raise
        report = self.write()
        from backendlab.compare.report import write_outputs

        write_outputs(report, self.out)
        return report


def compare(*, pool: WorkerPool | None = None, env: dict[str, str] | None = None, **options) -> CompareReport:
    """Python entry point: ``backendlab.compare.compare(model="cnn", epochs=3, out="runs/cnn")``.

    Options are :class:`~backendlab.runspec.RunSpec` fields and :class:`CompareOptions` fields.
    ``pool``: warm workers to run on (e.g. :func:`~backendlab.workers.runner.shared_pool`), kept warm afterwards;
    ``env``: environment variables the run's jobs see (see :class:`Compare`).
    """
    return Compare(CompareOptions.from_keywords(**options), pool=pool, env=env).run()
