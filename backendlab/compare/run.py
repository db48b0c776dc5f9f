"""``backendlab compare``: train one model on every backend from the same start, and compare.

The orchestrator (this module) imports no framework. It runs one worker per backend,
one after another so that each has the machine to itself and its timing is honest:

1. the first worker builds the model, saves the starting weights (``initial.weights.h5``)
   and trains; every later worker loads those weights, and every worker sees the same
   batches in the same order (backendlab's seeded NumPy generator);
2. each backend then loads every backend's saved ``.keras`` file and predicts (the
   portability matrix); Keras's numpy backend, where it can run the model, predicts
   with the starting weights as an independent reference;
3. everything is compared against the reference backend and written, atomically,
   after every worker: a Ctrl-C leaves every finished backend's results readable.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backendlab.backends import BACKEND_NAMES, BACKENDS, REFERENCE_BACKENDS, installed_backends
from backendlab.compare.results import BackendReport, CompareOptions, CompareReport
from backendlab.compare.verdict import TRAIN_ARRAYS, LoadedRun, TrainedRun, build_report
from backendlab.errors import UsageError
from backendlab.models import default_data
from backendlab.results import check_writable, read_json, write_json
from backendlab.workers import RESULT, WorkerOutcome, run_worker

WORKER_MODULE = "backendlab.compare.worker"
INITIAL_WEIGHTS = "initial.weights.h5"


# --- planning -------------------------------------------------------------------------


def plan_backends(requested: list[str] | None) -> tuple[list[str], dict[str, BackendReport], bool]:
    """Which backends run, which are skipped, and whether a skip was asked for by name."""
    named = requested is not None
    names = list(requested) if named else list(BACKEND_NAMES)
    for name in names:
        if name not in BACKENDS:
            raise UsageError(f"unknown backend {name!r} in --backends: valid backends are {', '.join(BACKEND_NAMES)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--backends names a backend twice: {','.join(names)}")
    installed = {b.name for b in installed_backends()}
    skipped = {
        n: BackendReport(n, "skipped", message=f"{BACKENDS[n].framework} is not installed: {BACKENDS[n].install_hint}")
        for n in names
        if n not in installed
    }
    runnable = [n for n in names if n in installed]
    if not runnable:
        raise UsageError("no requested backend is installed: " + "; ".join(r.message for r in skipped.values()))
    return runnable, skipped, named and bool(skipped)


def train_job(opts: CompareOptions, initial: Path, make_initial: bool) -> dict:
    """Train on the shared batches from the shared start: made by the first worker, loaded by the others."""
    return {
        "kind": "train",
        "run": opts.run.to_dict(),
        "initial_weights": str(initial.resolve()),
        "make_initial": make_initial,
    }


def predict_job(opts: CompareOptions, models: dict[str, str], initial: Path | None) -> dict:
    """Load each backend's saved ``.keras`` file and predict; with ``initial``, also predict from the shared start."""
    return {
        "kind": "predict",
        "run": opts.run.to_dict(),
        "models": models,
        "initial_weights": str(initial.resolve()) if initial else None,
    }


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _arrays(folder: Path, names) -> dict[str, dict[str, np.ndarray]]:
    return {name: _load_npz(folder / f"{name}.npz") for name in names if (folder / f"{name}.npz").exists()}


# --- the run --------------------------------------------------------------------------


class Compare:
    """One compare run; ``run()`` returns the report and leaves it, and the files, in ``out``.

    It imports no framework. One worker per backend trains, one after the other so each
    has the machine to itself and its timing is honest; then each loads every saved model.
    """

    def __init__(self, opts: CompareOptions, on_event: Callable[[str, str, dict], None] | None = None):
        run = opts.run.replace(data=opts.run.data or default_data(opts.run.model)).check()
        self.opts = dataclasses.replace(opts, run=run)
        self.out = Path(opts.out)
        self.on_event = on_event or (lambda backend, stage, info: None)
        self.runnable, self.skipped, self.named_skip = plan_backends(opts.backends)
        if opts.reference is not None and opts.reference not in self.runnable:
            raise UsageError(
                f"--reference {opts.reference!r} is not among the backends that can run: {', '.join(self.runnable)}"
            )
        self.reference = opts.reference or self.runnable[0]
        # The reference runs first: it makes the starting weights everyone loads.
        self.runnable.sort(key=lambda n: n != self.reference)
        self.trained: dict[str, TrainedRun] = {}
        self.loaded: dict[str, LoadedRun] = {}
        self.interrupted = False
        check_writable(self.out, "--out", folder=True)  # before any worker starts

    def _run(self, backend: str, job: dict, folder: Path) -> WorkerOutcome:
        self.on_event(backend, "start", {"kind": job["kind"]})
        outcome = run_worker(
            WORKER_MODULE,
            backend,
            job,
            folder,
            timeout=self.opts.timeout,
            devices=self.opts.run.devices if job["kind"] == "train" else 1,
            on_progress=lambda p: self.on_event(backend, "progress", p),
        )
        self.on_event(backend, "end", {"status": outcome.status, "message": outcome.message})
        if outcome.status == "usage" and not any(t.outcome.ok for t in self.trained.values()):
            # The first backend to try found the model or data wrong: that is bad input, not a backend's fault.
            raise UsageError(outcome.message)
        return outcome

    def train_all(self) -> None:
        initial = self.out / INITIAL_WEIGHTS
        for backend in self.runnable:
            job = train_job(self.opts, initial, make_initial=not initial.exists())
            outcome = self._run(backend, job, self.out / backend)
            self.trained[backend] = TrainedRun(outcome, _arrays(self.out / backend, TRAIN_ARRAYS))
            self.write()

    def portability_all(self) -> None:
        saved = {
            n: str((self.out / n / "model.keras").resolve())
            for n, t in self.trained.items()
            if t.outcome.ok and (self.out / n / "model.keras").exists()
        }
        if not saved:
            return
        loaders = [n for n in self.runnable if n in self.trained and self.trained[n].outcome.ok]
        for loader in [*loaders, *REFERENCE_BACKENDS]:
            # Only a reference-only backend predicts from the shared start: it is the independent one.
            initial = self.out / INITIAL_WEIGHTS if loader in REFERENCE_BACKENDS else None
            folder = self.out / "portability" / loader
            outcome = self._run(loader, predict_job(self.opts, saved, initial), folder)
            predictions = {}
            if outcome.ok:
                files = outcome.result["predictions"]
                predictions = {saver: _load_npz(folder / name) for saver, name in files.items()}
            self.loaded[loader] = LoadedRun(outcome, predictions)
            self.write()

    def _collect_finished(self) -> None:
        """After Ctrl-C: a worker that wrote its result finished, even if we had not read it yet."""
        for backend in self.runnable:
            result = self.out / backend / RESULT
            if backend not in self.trained and result.exists():
                outcome = WorkerOutcome(backend, "ok", 0, 0.0, read_json(result), "", "")
                self.trained[backend] = TrainedRun(outcome, _arrays(self.out / backend, TRAIN_ARRAYS))

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
        )

    def write(self) -> CompareReport:
        report = self.report()
        write_json(self.out / "report.json", report)
        return report

    def _clear(self) -> None:
        """A reused folder must not lend an earlier run's files to this one."""
        for name in [*self.runnable, "portability"]:
            shutil.rmtree(self.out / name, ignore_errors=True)
        for name in (INITIAL_WEIGHTS, "report.json", "report.md", "loss_curves.png"):
            (self.out / name).unlink(missing_ok=True)

    def run(self) -> CompareReport:
        self.out.mkdir(parents=True, exist_ok=True)
        self._clear()
        try:
            self.train_all()
            if self.opts.portability:
                self.portability_all()
        except KeyboardInterrupt:
            self.interrupted = True
            self._collect_finished()
            self.write()
            raise
        report = self.write()
        from backendlab.compare.report import write_outputs

        write_outputs(report, self.out)
        return report


def compare(**options) -> CompareReport:
    """Python entry point: ``backendlab.compare.compare(model="cnn", epochs=3, out="runs/cnn")``.

    Options are :class:`~backendlab.runspec.RunSpec` fields and :class:`CompareOptions` fields.
    """
    return Compare(CompareOptions.from_keywords(**options)).run()
