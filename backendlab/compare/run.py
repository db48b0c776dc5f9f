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
   (:mod:`backendlab.compare.locating`, :mod:`backendlab.compare.probe`); where only
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
from backendlab.compare.locating import Locating, load_npz
from backendlab.compare.results import BackendReport, CompareOptions, CompareReport
from backendlab.compare.verdict import TRAIN_ARRAYS, LoadedRun, TrainedRun, build_report
from backendlab.compare.worker import handle
from backendlab.data import check_data
from backendlab.errors import UsageError
from backendlab.export.formats import FORMATS as EXPORT_FORMATS
from backendlab.export.formats import ROUTES as EXPORT_ROUTES
from backendlab.export.formats import failed_cell, missing_packages
from backendlab.models import check_model, default_data
from backendlab.results import check_writable, read_json, write_json
from backendlab.workers.protocol import MODEL, RESULT, Handler, Job, Outcome
from backendlab.workers.runner import WorkerPool

INITIAL_WEIGHTS = "initial.weights.h5"


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


def _arrays(folder: Path, names) -> dict[str, dict[str, np.ndarray]]:
    return {name: load_npz(folder / f"{name}.npz") for name in names if (folder / f"{name}.npz").exists()}


# --- the run --------------------------------------------------------------------------


class Compare(Locating):
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
        # What --out was before the run: bad input leaves it as it was (see run()); None: it held files.
        out = Path(opts.out)
        self.out_was = "missing" if not out.exists() else "empty" if out.is_dir() and not any(out.iterdir()) else None
        # A model or data given as a Python object goes to the workers as a file in --out (backendlab.callables).
        run = send_run(opts.run, Path(opts.out) / SENT_FOLDER)
        run = run.replace(data=run.data or default_data(run.model)).check()
        check_model(run.model)  # names and files now: a worker would tell them after every import
        check_data(run.data)
        self.opts = dataclasses.replace(opts, run=run)
        self.out = Path(opts.out)
        self.initial = self.out / INITIAL_WEIGHTS  # the starting weights every backend loads
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
        for backend in self.runnable:
            payload = train_job(self.opts, self.initial, make_initial=not self.initial.exists())
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
        run = self.opts.run
        for backend in self.floor_targets():
            for seed in range(1, TWINS + 1):
                folder = self.out / "floor" / f"{backend}-{seed}"
                payload = twin_job(self.opts, self.initial, seed)
                job = self._job(backend, payload, folder, devices=run.devices, processes=run.processes)
                outcome = self._ended(self.pool.run_many([job])[0])
                self.twins.setdefault(backend, []).append(TrainedRun(outcome, _arrays(folder, TRAIN_ARRAYS)))
        if self.twins:
            self.write()

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
            initial = self.initial if loader in REFERENCE_BACKENDS else None
            jobs.append(self._job(loader, predict_job(self.opts, saved, initial), self.out / "portability" / loader))
        by_devices: dict[int, list[Job]] = {}
        for job in jobs:
            by_devices.setdefault(job.devices, []).append(job)
        for group in by_devices.values():
            for job, outcome in zip(group, self.pool.run_many(group), strict=True):
                predictions = {}
                if self._ended(outcome).ok:
                    files = outcome.result["predictions"]
                    predictions = {saver: load_npz(job.workdir / name) for saver, name in files.items()}
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
        except UsageError:  # the model or data was wrong: the one error line is the result, not a folder
            if self.out_was == "missing":
                shutil.rmtree(self.out, ignore_errors=True)
            elif self.out_was == "empty":  # a folder of the user's own: emptied, kept
                for entry in self.out.iterdir():
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
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
