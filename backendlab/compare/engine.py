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

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from backendlab.backends import BACKEND_NAMES, BACKENDS, REFERENCE_ONLY_BACKEND, installed_backends
from backendlab.compare.diff import Diff, diff_arrays, first_step_outside
from backendlab.errors import UsageError
from backendlab.models import default_data
from backendlab.results import read_json, write_json
from backendlab.workers import RESULT, WorkerOutcome, run_worker

WORKER = "backendlab.compare.worker"

#: Keras's own cross-backend checks use 1e-3 after training; so do we, by default.
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-3
#: With stochastic layers on, only final metrics can be compared, and loosely.
DEFAULT_STAT_RTOL = 0.1


@dataclass
class CompareOptions:
    model: str = "mlp"
    data: str | None = None
    backends: list[str] | None = None  # None: every installed backend
    epochs: int = 10
    batch_size: int = 32
    optimizer: str | None = None
    learning_rate: float | None = None
    seed: int = 0
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    stat_rtol: float = DEFAULT_STAT_RTOL
    reference: str | None = None
    disable_stochastic: bool = False
    portability: bool = True  # load every saved .keras file on every backend
    devices: int = 1  # > 1: every backend trains data-parallel on its own engine
    timeout: float = 900.0
    out: str = "compare-out"


@dataclass
class BackendReport:
    backend: str
    status: str  # ok | skipped | failed | crashed | timeout | nonfinite | not run
    verdict: str | None = None  # agree | diverge; None where there is nothing to compare
    message: str = ""
    framework_version: str | None = None
    initial_checksum: str | None = None
    train_time_s: float | None = None
    history: dict = field(default_factory=dict)
    step_losses: list = field(default_factory=list)
    test: dict = field(default_factory=dict)
    differences: dict[str, Diff] = field(default_factory=dict)
    first_divergent_step: int | None = None
    nonfinite_step: int | None = None
    log_tail: str = ""


@dataclass
class CompareReport:
    verdict: str  # agree | diverge | failed | incomplete
    reference: str | None
    settings: dict
    criterion: str  # exact | statistical
    stochastic_layers: list[str]
    notes: list[str]
    keras_version: str | None
    backends: dict[str, BackendReport]
    portability: dict[str, dict[str, dict]]  # saver -> loader -> {"status", "max_abs", ...}
    numpy_reference: dict[str, dict]  # backend -> Diff of its starting predictions vs numpy

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "agree" else 1


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


def _train_job(opts: CompareOptions, data: str, initial: Path, make_initial: bool) -> dict:
    return {
        "kind": "train",
        "model": opts.model,
        "data": data,
        "epochs": opts.epochs,
        "batch_size": opts.batch_size,
        "optimizer": opts.optimizer,
        "learning_rate": opts.learning_rate,
        "seed": opts.seed,
        "disable_stochastic": opts.disable_stochastic,
        "initial_weights": str(initial.resolve()),
        "make_initial": make_initial,
        "devices": opts.devices,
        # Data-parallel runs drop each epoch's partial batch; the makers of the starting weights agree.
        "drop_remainder": opts.devices > 1,
    }


# --- comparing ------------------------------------------------------------------------


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _final_metrics(report: BackendReport) -> dict[str, float]:
    metrics = {f"final {k}": v[-1] for k, v in report.history.items() if v}
    metrics.update({f"test {k}": v for k, v in report.test.items()})
    return metrics


def compare_backend(
    report: BackendReport, ref: BackendReport, out: Path, opts: CompareOptions, statistical: bool
) -> None:
    """Fill in ``report``'s differences against ``ref`` and its verdict."""
    rtol, atol = opts.rtol, opts.atol
    d = report.differences
    d["step_losses"] = Diff.of(report.step_losses, ref.step_losses, rtol, atol)
    # Metrics both runs logged: fit also logs per-output losses that the custom loop
    # (which torch uses for --devices > 1) does not.
    keys = sorted(set(report.history) & set(ref.history))
    d["epoch_metrics"] = diff_arrays(
        {k: report.history[k] for k in keys}, {k: ref.history[k] for k in keys}, rtol, atol
    )
    mine, theirs = out / report.backend, out / ref.backend
    d["weights"] = diff_arrays(_load_npz(mine / "weights.npz"), _load_npz(theirs / "weights.npz"), rtol, atol)
    d["predictions"] = diff_arrays(
        _load_npz(mine / "predictions.npz"), _load_npz(theirs / "predictions.npz"), rtol, atol
    )
    d["initial_predictions"] = diff_arrays(
        _load_npz(mine / "initial_predictions.npz"), _load_npz(theirs / "initial_predictions.npz"), rtol, atol
    )
    d["test_metrics"] = diff_arrays(
        {k: [v] for k, v in report.test.items()}, {k: [v] for k, v in ref.test.items()}, rtol, atol
    )
    if statistical:
        final_mine, final_ref = _final_metrics(report), _final_metrics(ref)
        d["final_metrics_statistical"] = diff_arrays(
            {k: [v] for k, v in final_mine.items()}, {k: [v] for k, v in final_ref.items()}, opts.stat_rtol, atol
        )
        agree = d["final_metrics_statistical"].within and d["initial_predictions"].within
    else:
        agree = all(diff.within for diff in d.values())
        report.first_divergent_step = first_step_outside(report.step_losses, ref.step_losses, rtol, atol)
    if report.initial_checksum != ref.initial_checksum:
        agree = False
        report.message = f"starting weights differ from {ref.backend}'s (checksum {report.initial_checksum} vs {ref.initial_checksum})"
    report.verdict = "agree" if agree else "diverge"
    if not agree and not report.message:
        worst = [name for name, diff in d.items() if not diff.within]
        where = (
            f"; losses left the tolerance at step {report.first_divergent_step}" if report.first_divergent_step else ""
        )
        report.message = f"outside rtol={rtol:g}, atol={atol:g} in {', '.join(worst)}{where}"


def _from_outcome(outcome: WorkerOutcome) -> BackendReport:
    if not outcome.ok:
        status = "failed" if outcome.status == "usage" else outcome.status
        return BackendReport(outcome.backend, status, message=outcome.message, log_tail=outcome.log_tail)
    r = outcome.result
    report = BackendReport(
        outcome.backend,
        "ok",
        framework_version=r["info"]["framework_version"],
        initial_checksum=r["initial_checksum"],
        train_time_s=r["train_time_s"],
        history=r["history"],
        step_losses=[float("nan") if v is None else v for v in r["step_losses"]],
        test=r["test"],
        nonfinite_step=r["nonfinite_step"],
    )
    if report.nonfinite_step is not None:
        bad = report.step_losses[report.nonfinite_step - 1]
        report.status = "nonfinite"
        report.message = f"training loss became {bad} at step {report.nonfinite_step}"
    return report


# --- the run --------------------------------------------------------------------------


class Compare:
    """One compare run; ``run()`` returns the report and leaves it, and the files, in ``out``."""

    def __init__(self, opts: CompareOptions, on_event: Callable[[str, str, dict], None] | None = None):
        self.opts = opts
        self.out = Path(opts.out)
        self.data = opts.data or default_data(opts.model)
        self.on_event = on_event or (lambda backend, stage, info: None)
        self.runnable, skipped, self.named_skip = plan_backends(opts.backends)
        if opts.reference is not None and opts.reference not in self.runnable:
            raise UsageError(
                f"--reference {opts.reference!r} is not among the backends that can run: {', '.join(self.runnable)}"
            )
        self.reference = opts.reference or self.runnable[0]
        # The reference runs first: it makes the starting weights everyone loads.
        self.runnable.sort(key=lambda n: n != self.reference)
        self.reports: dict[str, BackendReport] = {n: BackendReport(n, "not run") for n in self.runnable} | skipped
        self.portability: dict[str, dict[str, dict]] = {}
        self.numpy_reference: dict[str, dict] = {}
        self.stochastic: list[str] = []
        self.keras_version: str | None = None
        self.interrupted = False

    # --- phases ---

    def _run(self, backend: str, job: dict, folder: Path) -> WorkerOutcome:
        self.on_event(backend, "start", {"kind": job["kind"]})
        outcome = run_worker(
            WORKER,
            backend,
            job,
            folder,
            timeout=self.opts.timeout,
            devices=job.get("devices", 1) if job["kind"] == "train" else 1,
            on_progress=lambda p: self.on_event(backend, "progress", p),
        )
        self.on_event(backend, "end", {"status": outcome.status, "message": outcome.message})
        if outcome.status == "usage" and not any(r.status == "ok" for r in self.reports.values()):
            # The first backend to try found the model or data wrong: that is bad input, not a backend's fault.
            raise UsageError(outcome.message)
        return outcome

    def train_all(self) -> None:
        initial = self.out / "initial.weights.h5"
        made = False
        for backend in self.runnable:
            job = _train_job(self.opts, self.data, initial, make_initial=not made)
            outcome = self._run(backend, job, self.out / backend)
            made = made or initial.exists()
            report = _from_outcome(outcome)
            self.reports[backend] = report
            if outcome.ok:
                self.stochastic = outcome.result["stochastic_layers"]
                self.keras_version = outcome.result["info"]["keras_version"]
            self.write()

    def portability_all(self) -> None:
        saved = {
            n: str((self.out / n / "model.keras").resolve())
            for n in self.runnable
            if (self.out / n / "model.keras").exists()
        }
        if not saved:
            return
        loaders = [n for n in self.runnable if self.reports[n].status in ("ok", "nonfinite")]
        loaders.append(REFERENCE_ONLY_BACKEND)
        for loader in loaders:
            job = _train_job(self.opts, self.data, self.out / "initial.weights.h5", False)
            job.update(kind="predict", models=saved)
            if loader != REFERENCE_ONLY_BACKEND:
                job["initial_weights"] = None  # the numpy backend is the independent one
            outcome = self._run(loader, job, self.out / "portability" / loader)
            self._collect_portability(loader, saved, outcome)
            self.write()

    def _collect_portability(self, loader: str, saved: dict, outcome: WorkerOutcome) -> None:
        folder = self.out / "portability" / loader
        for saver in saved:
            cell: dict = {"status": outcome.status, "message": outcome.message}
            if outcome.ok:
                if saver in outcome.result["predictions"]:
                    diff = diff_arrays(
                        _load_npz(folder / outcome.result["predictions"][saver]),
                        _load_npz(self.out / saver / "predictions.npz"),
                        self.opts.rtol,
                        self.opts.atol,
                    )
                    cell = {"status": "agree" if diff.within else "diverge", **asdict(diff)}
                else:
                    cell = {"status": "failed", "message": outcome.result["errors"].get(saver, "")}
            self.portability.setdefault(saver, {})[loader] = cell
        if loader == REFERENCE_ONLY_BACKEND:
            self._collect_numpy_reference(outcome, folder)

    def _collect_numpy_reference(self, outcome: WorkerOutcome, folder: Path) -> None:
        if not outcome.ok or "initial" not in outcome.result["predictions"]:
            reason = outcome.result["errors"].get("initial", "") if outcome.ok else outcome.message
            self.numpy_reference = {
                "_unavailable": {"message": f"Keras's numpy backend could not run this model: {reason}"}
            }
            return
        numpy_preds = _load_npz(folder / "initial_predictions.npz")
        for backend in self.runnable:
            path = self.out / backend / "initial_predictions.npz"
            if path.exists():
                diff = diff_arrays(_load_npz(path), numpy_preds, self.opts.rtol, self.opts.atol)
                self.numpy_reference[backend] = {"status": "agree" if diff.within else "diverge", **asdict(diff)}

    def _collect_finished(self) -> None:
        """After Ctrl-C: a worker that wrote its result finished, even if we had not read it yet."""
        for backend, report in self.reports.items():
            result = self.out / backend / RESULT
            if report.status == "not run" and result.exists():
                self.reports[backend] = _from_outcome(WorkerOutcome(backend, "ok", 0, 0.0, read_json(result), "", ""))

    def compare_all(self) -> None:
        ref = self.reports[self.reference]
        statistical = bool(self.stochastic) and not self.opts.disable_stochastic
        for name, report in self.reports.items():
            if name == self.reference or report.status not in ("ok", "nonfinite"):
                continue
            if ref.status != "ok":
                report.message = (
                    report.message
                    or f"not compared: the reference {self.reference} has no usable result ({ref.status})"
                )
                continue
            if report.status == "ok":
                compare_backend(report, ref, self.out, self.opts, statistical)
            else:
                report.verdict = "diverge"
        if ref.status == "ok":
            ref.verdict = "agree"  # with itself; it is the yardstick

    # --- the report ---

    def build_report(self) -> CompareReport:
        statistical = bool(self.stochastic) and not self.opts.disable_stochastic
        notes = []
        if self.stochastic and statistical:
            notes.append(
                f"stochastic layers ({', '.join(self.stochastic)}) draw from each backend's own random generator, "
                "so training cannot match step by step; the verdict compares final-epoch and test metrics within "
                f"a relative {self.opts.stat_rtol:g} (and the starting predictions exactly). Step, weight and "
                "prediction differences are shown but do not decide. Run with --disable-stochastic for an exact comparison."
            )
        elif self.stochastic:
            notes.append(
                f"stochastic layers ({', '.join(self.stochastic)}) were switched off (run as in inference) on every "
                "backend by --disable-stochastic, so the comparison is exact."
            )
        for r in self.reports.values():
            if r.status == "skipped" and self.named_skip:
                notes.append(f"{r.backend} was asked for by name but is not installed")
        statuses = {r.status for r in self.reports.values()}
        failed = statuses & {"failed", "crashed", "timeout", "not run", "nonfinite"} or (
            self.named_skip and "skipped" in statuses
        )
        verdicts = [r.verdict for r in self.reports.values() if r.verdict]
        cells = [
            c for row in self.portability.values() for loader, c in row.items() if loader != REFERENCE_ONLY_BACKEND
        ]
        portable = all(c["status"] == "agree" for c in cells)
        if self.interrupted:
            verdict = "incomplete"
        elif failed:
            verdict = "failed"
        elif "diverge" in verdicts or not portable:
            verdict = "diverge"
        else:
            verdict = "agree"
        settings = {k: v for k, v in asdict(self.opts).items() if k not in ("out",)}
        settings["data"] = self.data
        settings["backends"] = list(self.reports)
        return CompareReport(
            verdict=verdict,
            reference=self.reference,
            settings=settings,
            criterion="statistical" if statistical else "exact",
            stochastic_layers=self.stochastic,
            notes=notes,
            keras_version=self.keras_version,
            backends=self.reports,
            portability=self.portability,
            numpy_reference=self.numpy_reference,
        )

    def write(self) -> CompareReport:
        report = self.build_report()
        write_json(self.out / "report.json", report)
        return report

    def run(self) -> CompareReport:
        self.out.mkdir(parents=True, exist_ok=True)
        for backend in self.runnable:  # a reused folder must not lend old results to this run
            (self.out / backend / RESULT).unlink(missing_ok=True)
        try:
            self.train_all()
            self.compare_all()
            if self.opts.portability:
                self.portability_all()
        except KeyboardInterrupt:
            self.interrupted = True
            self._collect_finished()
            self.compare_all()
            self.write()
            raise
        report = self.write()
        from backendlab.compare.report import write_outputs

        write_outputs(report, self.out)
        return report


def compare(**options) -> CompareReport:
    """Python entry point: ``backendlab.compare.compare(model="cnn", epochs=3, out="runs/cnn")``."""
    return Compare(CompareOptions(**options)).run()
