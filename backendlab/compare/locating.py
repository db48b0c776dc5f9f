"""compare's locator: where a backend that diverges parts from the reference, taken apart on both.

A mixin of :class:`~backendlab.compare.run.Compare`, which gives it the run's ``opts``, ``out``, warm
``pool``, ``trained`` runs and ``initial`` weights file, makes its jobs (``_job``, ``_ended``) and
keeps what it finds in ``located`` (backend -> (divergence as a dict, phases table, layers)). The
probes are :mod:`backendlab.compare.probe`'s; where they part, :func:`backendlab.compare.locate.locate`
(pure) says; the catalog of known differences (:mod:`backendlab.compare.known`) says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backendlab.compare.known import DATA_PARALLEL, model_config
from backendlab.compare.known import match as known_match
from backendlab.compare.locate import EVALUATE_PHASES, Divergence, evaluation_window, locate, phase_of, phases_table
from backendlab.compare.probe import handle as probe_handle
from backendlab.compare.results import CompareReport
from backendlab.compare.verdict import evaluation_stage
from backendlab.text import plural
from backendlab.workers.protocol import MODEL, PROBE

#: An evaluation probe records every layer's outputs for at most this many test samples (whole batches).
EVALUATE_SAMPLES = 512


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _not_located(step: int | None, why: str, during: str = "training") -> tuple[dict, list, dict]:
    return Divergence.nowhere(step, 0.0, 0.0, f"not located: {why}", during).to_dict(), [], {}


class Locating:
    """Taking apart the step (or the evaluation) where each diverging backend parts from the reference."""

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
            "initial_weights": str(self.initial.resolve()),
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
            ref_arrays, mine_arrays = load_npz(folder / yardstick / PROBE), load_npz(folder / name / PROBE)
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
                ref_arrays, mine_arrays = load_npz(folder / yardstick / PROBE), load_npz(folder / name / PROBE)
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
