"""From what the workers left behind to a :class:`CompareReport`: pure functions, no files, no framework.

:data:`QUANTITIES` is the one ordered registry of what is compared between backends. It
drives the diffing here, the columns of ``report.md`` and of the terminal table. Adding a
quantity means one entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from backendlab.compare import floor
from backendlab.compare.diff import Diff, diff_arrays, first_step_outside
from backendlab.compare.facts import (
    as_ran,
    batches_proof,
    export_cells,
    export_verdict,
    numpy_reference,
    portability_cells,
    portability_verdict,
    ran_facts,
    shared_start,
)
from backendlab.compare.locate import threshold_for
from backendlab.compare.results import (
    AGREE_ROUNDING,
    OFF,
    OUTSIDE,
    PORTABLE,
    STATISTICAL_MARKS,
    BackendReport,
    CompareOptions,
    CompareReport,
    Criterion,
    stochastic_marks,
)
from backendlab.results import NonFinite
from backendlab.text import counted_names
from backendlab.workers.protocol import Outcome

Arrays = dict[str, np.ndarray]

#: Array files a training worker writes, each compared as a quantity below.
TRAIN_ARRAYS = ("weights", "predictions", "initial_predictions")


@dataclass
class TrainedRun:
    """One backend's training worker: how it ended, and the arrays it saved (none if it failed)."""

    outcome: Outcome
    arrays: dict[str, Arrays] = field(default_factory=dict)


@dataclass
class LoadedRun:
    """One backend loading every saved ``.keras`` file: how it ended, and its predictions per saver.

    ``"initial"`` holds a reference-only backend's predictions with the shared starting weights.
    """

    outcome: Outcome
    predictions: dict[str, Arrays] = field(default_factory=dict)


def _final_metrics(report: BackendReport, arrays: dict) -> dict:
    metrics = {f"final {k}": [v[-1]] for k, v in report.history.items() if v}
    metrics.update({f"test {k}": [v] for k, v in report.test.items()})
    return metrics


@dataclass(frozen=True)
class Quantity:
    name: str  # its key in BackendReport.differences and report.json
    values: Callable[[BackendReport, dict], dict]  # (report, saved arrays) -> {key: array}
    criteria: tuple[str, ...] = ("exact",)  # the criteria under which it decides the verdict
    only_statistical: bool = False  # computed only when stochastic layers decide loosely
    common_keys: bool = False  # compare the keys both backends logged, not all of them
    table: bool = True  # a column of the terminal table
    markdown: bool = True  # a column of report.md
    stage: str = "training"  # what computes it: training, or evaluate or predict on the trained model

    def diff(self, mine: tuple, ref: tuple, rtol: float, atol: float) -> Diff:
        a, b = self.values(*mine), self.values(*ref)
        if self.common_keys:
            keys = sorted(set(a) & set(b))
            a, b = {k: a[k] for k in keys}, {k: b[k] for k in keys}
        return diff_arrays(a, b, rtol, atol)


QUANTITIES: tuple[Quantity, ...] = (
    Quantity("step_losses", lambda r, a: {"loss": r.step_losses}),
    # fit also logs per-output losses that the custom loop (torch's for --devices > 1) does not.
    Quantity("epoch_metrics", lambda r, a: r.history, common_keys=True),
    Quantity("weights", lambda r, a: a["weights"]),
    Quantity("predictions", lambda r, a: a["predictions"], stage="predict"),
    Quantity(
        "initial_predictions", lambda r, a: a["initial_predictions"], criteria=("exact", "statistical"), table=False
    ),
    Quantity("test_metrics", lambda r, a: {k: [v] for k, v in r.test.items()}, table=False, stage="evaluate"),
    Quantity(
        "final_metrics_statistical",
        _final_metrics,
        criteria=("statistical",),
        only_statistical=True,
        table=False,
        markdown=False,
    ),
)


def backend_report(outcome: Outcome) -> BackendReport:
    """A backend's report from its training worker's outcome, before any comparison."""
    if not outcome.ok:
        status = "failed" if outcome.status == "usage" else outcome.status
        return BackendReport(outcome.backend, status, message=outcome.message, log_tail=outcome.log_tail)
    r = outcome.result
    report = BackendReport(
        outcome.backend,
        "ok",
        framework_version=r["info"]["framework_version"],
        initial_checksum=r["start_checksum"],
        train_time_s=r["train_time_s"],
        history={k: _numbers(v) for k, v in r["history"].items()},
        step_losses=_numbers(r["step_losses"]),
        test={k: _number(v) for k, v in r["test"].items()},
    )
    nonfinite = NonFinite.from_dict(r.get("nonfinite"))
    if nonfinite is not None:  # the worker stopped training there
        report.status, report.message = "nonfinite", nonfinite.message
        report.nonfinite, report.nonfinite_step = nonfinite, nonfinite.step
    return report


def _number(value) -> float:
    """A number from a worker's JSON, where NaN and infinity were written as null (read back as NaN)."""
    return float("nan") if value is None else value


def _numbers(values: list) -> list[float]:
    return [_number(v) for v in values]


def compare_backend(
    report: BackendReport, arrays: dict, ref: BackendReport, ref_arrays: dict, opts: CompareOptions, criterion: str
) -> None:
    """Fill in ``report``'s differences against ``ref``, its verdict and, when it diverges, why."""
    deciding = []
    for q in QUANTITIES:
        if q.only_statistical and criterion != "statistical":
            continue
        rtol = opts.stat_rtol if q.only_statistical else opts.rtol
        report.differences[q.name] = q.diff((report, arrays), (ref, ref_arrays), rtol, opts.atol)
        if criterion in q.criteria:
            deciding.append(q.name)
    agree = all(report.differences[name].within for name in deciding)
    # Under the statistical criterion it does not decide, but it still says where training parted.
    report.first_divergent_step = first_step_outside(report.step_losses, ref.step_losses, opts.rtol, opts.atol)
    if report.initial_checksum != ref.initial_checksum:
        agree = False
        report.message = (
            f"starting weights differ from {ref.backend}'s "
            f"(checksum {report.initial_checksum} vs {ref.initial_checksum})"
        )
    report.verdict = "agree" if agree else "diverge"
    if not agree and not report.message and evaluation_stage(report, criterion):
        report.message = evaluation_message(report, ref, opts)
    if not agree and not report.message:
        worst = [name for name in deciding if not report.differences[name].within]
        step = report.first_divergent_step
        where = f"; losses left the tolerance at step {step}" if step else ""
        report.message = f"outside rtol={opts.rtol:g}, atol={opts.atol:g} in {', '.join(worst)}{where}"


def evaluation_stage(report: BackendReport, criterion: str = "exact") -> str | None:
    """``evaluate`` or ``predict`` where only quantities of that stage left the tolerance (``evaluate`` if both
    did), every quantity of training staying inside it; None otherwise."""
    out = [
        q
        for q in QUANTITIES
        if criterion in q.criteria and q.name in report.differences and not report.differences[q.name].within
    ]
    if not out or any(q.stage == "training" for q in out):
        return None
    return "evaluate" if any(q.stage == "evaluate" for q in out) else "predict"


def _and(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


def evaluation_message(report: BackendReport, ref: BackendReport, opts: CompareOptions) -> str:
    """``training agrees; evaluation differs in the loss on tensorflow (test loss 249.4 against 7.387 on jax)``."""
    said = []
    if not report.differences["test_metrics"].within:
        keys = [
            k
            for k in report.test
            if k in ref.test and not Diff.of(report.test[k], ref.test[k], opts.rtol, opts.atol).within
        ]
        values = ", ".join(f"test {k} {report.test[k]:.4g} against {ref.test[k]:.4g}" for k in keys)
        said.append(
            f"evaluation differs in the {_and(keys)} on {report.backend} ({values} on {ref.backend})"
            if keys
            else f"evaluation reports other metrics on {report.backend} ({', '.join(report.test)}) than on "
            f"{ref.backend} ({', '.join(ref.test)})"
        )
    if not report.differences["predictions"].within:
        gap = report.differences["predictions"].max_abs
        said.append(f"predict differs on {report.backend} (predictions up to {gap:.2e} from {ref.backend}'s)")
    return "training agrees; " + "; ".join(said)


def odd_one_out(names: list[str], agree: Callable[[str, str], bool], numpy: Mapping[str, str]) -> dict:
    """The one backend that differs from every other, and how that was decided; {} where none is alone.

    By ``majority``: the others (two or more) agree with each other, unless Keras's numpy backend
    (``numpy``: backend -> its starting predictions' status against numpy's, where it ran) sides with
    the lone backend against all of them. By ``numpy``, the tie-breaker where no majority decides:
    the lone backend's starting predictions differ from numpy's, and some others' agree with them.
    """
    found = []
    for odd in names:
        rest = [n for n in names if n != odd]
        if not rest or any(agree(odd, n) for n in rest):
            continue
        if len(rest) > 1 and all(agree(a, b) for a, b in combinations(rest, 2)):
            if not (numpy.get(odd) == "agree" and all(numpy.get(n) == "diverge" for n in rest)):
                both = "both" if len(rest) == 2 else "each of them"
                why = f"{_and(rest)} agree with each other, and {odd} differs from {both}"
                found.append({"backend": odd, "agreeing": rest, "by": "majority", "message": why})
        elif numpy.get(odd) == "diverge" and any(numpy.get(n) == "agree" for n in rest):
            agreeing = [n for n in rest if numpy.get(n) == "agree"]
            theirs = _and([f"{n}'s" for n in agreeing])
            why = (
                f"it differs from {_and(rest)}, and its starting predictions differ from those of Keras's numpy "
                f"backend, an independent reference, where {theirs} agree with them"
            )
            found.append({"backend": odd, "agreeing": agreeing, "by": "numpy", "message": why})
    if len(found) != 1:
        return {}
    odd = found[0]
    return {**odd, "message": f"{odd['backend']} is the odd one out: {odd['message']}"}


def _odd_one_out(
    reports: dict[str, BackendReport], trained: dict[str, TrainedRun], numpy_cells: dict, opts, criterion: str
) -> dict:
    """:func:`odd_one_out` among the backends that trained, each pair compared as a backend with its reference."""

    def agree(a: str, b: str) -> bool:
        trial = dataclasses.replace(reports[a], differences={}, message="", verdict=None)
        compare_backend(trial, trained[a].arrays, reports[b], trained[b].arrays, opts, criterion)
        return trial.verdict == "agree"

    names = [n for n, r in reports.items() if r.status == "ok" and n in trained]
    numpy = {n: cell["status"] for n, cell in numpy_cells.items() if n in names}
    return odd_one_out(names, agree, numpy) if len(names) > 1 else {}


def _blame(
    reference: str, reports, trained, numpy_cells: dict, opts, criterion: str, batches: dict
) -> tuple[str, dict]:
    """The odd one out (:func:`odd_one_out`), and the backend the others are measured against: the reference,
    or where it is the odd one out, the first that agrees with the others (and every backend is compared anew).

    None is named where the reference has no result, or where the backends were not fed the same batches:
    there the differences are the input's doing."""
    if reports[reference].status != "ok" or (batches and not batches["identical"]):
        return reference, {}
    odd = _odd_one_out(reports, trained, numpy_cells, opts, criterion)
    if odd.get("backend") != reference:
        return reference, odd
    yardstick = odd["agreeing"][0]
    _compare_with(yardstick, reports, trained, opts, criterion)
    measured = f"; the differences are measured against {yardstick}, not {reference}"
    return yardstick, {**odd, "message": odd["message"] + measured}


def _stand_in(reference: str, reports: dict[str, BackendReport]) -> tuple[str, str]:
    """The backend the others are measured against when the reference has no result: the first that trained.

    A reference that failed (a model Keras cannot train on it, such as a TensorFlow-only preprocessing
    layer under JAX's jit) still leaves the backends that did train comparable with each other."""
    if reports[reference].status == "ok":
        return reference, ""
    trained = [name for name, r in reports.items() if r.status == "ok"]
    if len(trained) < 2:  # nothing to compare with
        return reference, ""
    return trained[0], (
        f"the reference {reference} has no usable result ({reports[reference].status}); "
        f"the other backends are measured against {trained[0]} instead"
    )


def _compare_with(yardstick: str, reports: dict[str, BackendReport], trained: dict[str, TrainedRun], opts, criterion):
    """Every backend that trained compared anew, with ``yardstick`` in the reference's place."""
    ref = reports[yardstick]
    for name, report in reports.items():
        if report.status == "ok" and name != yardstick:
            report.differences, report.message, report.first_divergent_step = {}, "", None
            compare_backend(report, trained[name].arrays, ref, trained[yardstick].arrays, opts, criterion)
    ref.differences, ref.message, ref.first_divergent_step, ref.verdict = {}, "", None, "agree"


def _twin_values(q: Quantity, run: TrainedRun, base: tuple) -> dict:
    values = q.values(backend_report(run.outcome), run.arrays)
    return {k: values[k] for k in sorted(set(values) & set(base))} if q.common_keys else values


def judge_rounding(name: str, reports: dict, trained: dict, twins: dict, reference: str, opts: CompareOptions) -> None:
    """A backend outside the tolerance, against the noise floor its and the reference's twins measured.

    Within ``floor.FACTOR`` times the floor at every step and in every quantity, its verdict becomes
    ``agree within rounding``; otherwise it stays ``diverge`` and its message says how far beyond.
    """
    report, ref = reports[name], reports[reference]
    runs = {b: [t for t in twins.get(b, []) if t.outcome.ok and t.arrays] for b in (reference, name)}
    if not all(runs.values()) or len(report.step_losses) != len(ref.step_losses):
        return
    spreads = [
        floor.step_spread([backend_report(t.outcome).step_losses for t in runs[b]], reports[b].step_losses)
        for b in (reference, name)
    ]
    quantities = {}
    for q in QUANTITIES:
        if "exact" not in q.criteria or q.name == "step_losses":
            continue
        d = report.differences[q.name]
        spread = 0.0
        for b in (reference, name):
            base = q.values(reports[b], trained[b].arrays)
            spread = max(spread, floor.array_spread([_twin_values(q, t, base) for t in runs[b]], base))
        quantities[q.name] = (d.max_abs, d.within, spread)
    mine, theirs = np.asarray(report.step_losses, float), np.asarray(ref.step_losses, float)
    judged = floor.judge(
        np.abs(mine - theirs),
        opts.atol + opts.rtol * np.abs(theirs),
        spreads,
        quantities,
        twins=min(len(r) for r in runs.values()),
    )
    report.floor = judged.to_dict()
    if judged.within:
        report.verdict = AGREE_ROUNDING
        outside = [f"{q} {floor.ratio(v['difference'], v['floor']):.2g}x" for q, v in judged.quantities.items()
                   if not quantities[q][1]]  # fmt: skip
        if judged.worst_ratio:
            outside.insert(0, f"losses at most {judged.worst_ratio:.2g}x, at step {judged.worst_step}")
        report.message = (
            f"outside rtol={opts.rtol:g}, atol={opts.atol:g}, but within rounding: at every step and in every quantity "
            f"no further from {reference} than {judged.factor:g}x the noise floor ({', '.join(outside)}); {name} and "
            f"{reference} differ only as much as a 1-ulp change of the start does on this model"
        )
    else:
        beyond = [q for q, v in judged.quantities.items() if not v["within"]]
        if judged.worst_ratio is not None and judged.worst_ratio > judged.factor:
            beyond.insert(0, f"step {judged.worst_step} at {judged.worst_ratio:.3g}x its floor")
        report.message += (
            f"; beyond {judged.factor:g}x the noise floor (what a 1-ulp change of the start does): {', '.join(beyond)}"
        )


def amplification(name: str, report: BackendReport, trained: dict, twins: dict) -> float | None:
    """How many times training grew a 1-ulp change of the start on ``name``: its twins' final predictions
    against its own run's, relative to their scale, over float32's epsilon (compare.floor)."""
    runs = [t.arrays for t in twins.get(name, []) if t.outcome.ok and "predictions" in t.arrays]
    mine = trained[name].arrays if name in trained else {}
    if not runs or "predictions" not in mine:
        return None
    return floor.amplification(floor.relative_spread([r["predictions"] for r in runs], mine["predictions"]))


def _notes(opts: CompareOptions, marks: dict[str, str], criterion: str, skipped: dict, named_skip: bool) -> list[str]:
    notes = []
    portable = [name for name, mark in marks.items() if mark == PORTABLE]
    if criterion == "statistical":
        notes.append(_statistical_note(opts, marks))
    elif portable:
        notes.append(
            f"stochastic layers ({counted_names(portable)}) draw portably (--random portable): one generator, keyed "
            "by each layer's seed state, gives every backend the same random numbers, so the comparison is exact."
        )
    elif OFF in marks.values():
        notes.append(
            f"stochastic layers ({counted_names(list(marks))}) were switched off (run as in inference) on every "
            "backend by --disable-stochastic, so the comparison is exact."
        )
    if named_skip:
        notes += [f"{name} was asked for by name but is not installed" for name in skipped]
    return notes


def _statistical_note(opts: CompareOptions, marks: dict[str, str]) -> str:
    """Why only final metrics decide: the layers that draw other numbers on each backend, named."""
    outside = [name for name, mark in marks.items() if mark == OUTSIDE]
    portable = [name for name, mark in marks.items() if mark == PORTABLE]
    if outside:
        why = (
            f"{', '.join(outside)} {'draws' if len(outside) == 1 else 'draw'} from the framework's own random "
            "generator, outside Keras's random ops, where --random portable cannot reach"
        )
        exact = (
            "For an exact comparison, draw through keras.random with a SeedGenerator, or run with --disable-stochastic."
        )
    else:
        why = f"stochastic layers ({', '.join(marks)}) draw from each backend's own random generator (--random backend)"
        exact = "Run with --random portable or --disable-stochastic for an exact comparison."
    others = f"The other stochastic layers ({', '.join(portable)}) draw portably. " if portable else ""
    return (
        f"{why}, so training cannot match step by step; the verdict compares final-epoch and test metrics within "
        f"a relative {opts.stat_rtol:g} (and the starting predictions exactly). Step, weight and prediction "
        f"differences are shown but do not decide. {others}{exact}"
    )


def _overall(reports: dict[str, BackendReport], named_skip: bool, interrupted):
    """Training's verdict, from the backends alone: loading the saved models has its own (portability_verdict)."""
    statuses = {r.status for r in reports.values()}
    failed = statuses & {"failed", "crashed", "timeout", "not run", "nonfinite"} or (
        named_skip and "skipped" in statuses
    )
    if interrupted:
        return "incomplete"
    if failed:
        return "failed"
    if any(r.verdict == "diverge" for r in reports.values()):
        return "diverge"
    return AGREE_ROUNDING if any(r.verdict == AGREE_ROUNDING for r in reports.values()) else "agree"


def build_report(
    opts: CompareOptions,
    *,
    data: str,
    reference: str,
    planned: list[str],
    trained: dict[str, TrainedRun],
    skipped: dict[str, BackendReport] | None = None,
    named_skip: bool = False,
    loaded: dict[str, LoadedRun] | None = None,
    references: tuple[str, ...] = ("numpy",),
    interrupted: bool = False,
    located: dict[str, tuple] | None = None,
    rerouted: dict[str, dict[str, dict]] | None = None,
    twins: dict[str, list[TrainedRun]] | None = None,
    import_s: dict[str, float | None] | None = None,
    timing: dict | None = None,
) -> CompareReport:
    """The whole report from the workers' outcomes and arrays.

    ``planned`` lists the backends meant to train, in order (a backend without a run is
    ``not run``); ``loaded`` holds the portability loaders, reference-only backends among them;
    ``located``: per backend, where it first parts (a Divergence as a dict, the phases table, the
    layers the probe reached); ``rerouted``: per saver and format, the cell of an export made on another
    backend where its own failed; ``twins``: per backend, its perturbed twins' runs (the noise floor,
    :mod:`backendlab.compare.floor`); ``import_s``: each worker's import time; ``timing``: where the run's
    time went.
    """
    skipped, loaded = skipped or {}, loaded or {}
    reports = {n: backend_report(trained[n].outcome) if n in trained else BackendReport(n, "not run") for n in planned}
    reports |= skipped
    for name, (divergence, phases, layers) in (located or {}).items():
        reports[name].divergence, reports[name].divergence_phases, reports[name].divergence_layers = (
            divergence,
            phases,
            layers,
        )
    for name, seconds in (import_s or {}).items():
        if name in reports:
            reports[name].import_s = seconds
    ok = [trained[n].outcome.result for n in planned if n in trained and trained[n].outcome.ok]
    stochastic = ok[-1]["stochastic_layers"] if ok else []
    # A layer drawing outside Keras on any backend stays random there: what one backend saw counts for all.
    outside = sorted({name for r in ok for name in r.get("stochastic_outside", [])}, key=stochastic.index)
    marks = stochastic_marks(stochastic, outside, opts.run.random, opts.run.disable_stochastic)
    kind = "statistical" if any(m in STATISTICAL_MARKS for m in marks.values()) else "exact"
    reference, stand_in_note = _stand_in(reference, reports)
    ran = ran_facts(trained, planned, reference)
    judged = Criterion.resolve(kind, opts, ran.get("dtype_policy"), ran.get("compute_dtypes"))
    # Every comparison below is held to these: the tolerances given, or the compute dtype's defaults.
    threshold = opts.locate_threshold or threshold_for(judged.compute_dtype)
    opts = dataclasses.replace(opts, rtol=judged.rtol, atol=judged.atol, locate_threshold=threshold)
    criterion = judged.kind
    ref = reports[reference]
    for name, report in reports.items():
        if name == reference or report.status not in ("ok", "nonfinite"):
            continue
        if ref.status != "ok":
            report.message = (
                report.message or f"not compared: the reference {reference} has no usable result ({ref.status})"
            )
        elif report.status == "ok":
            compare_backend(report, trained[name].arrays, ref, trained[reference].arrays, opts, criterion)
        else:
            report.verdict = "diverge"
    if ref.status == "ok":
        ref.verdict = "agree"  # with itself; it is the yardstick
    saved = [n for n in planned if n in trained and "predictions" in trained[n].arrays]
    portability: dict[str, dict[str, dict]] = {}
    numpy_cells: dict[str, dict] = {}
    for loader, run in loaded.items():
        for saver, cell in portability_cells(loader, saved, run, trained, opts).items():
            portability.setdefault(saver, {})[loader] = cell
        if loader in references:
            numpy_cells = numpy_reference(run, {n: trained[n] for n in planned if n in trained}, opts)
    batches = batches_proof(trained, planned, reference)
    reference, odd = _blame(reference, reports, trained, numpy_cells, opts, criterion, batches)
    # Against the yardstick the blame settled on: a backend outside the tolerance, held to the noise floor.
    for name, report in reports.items():
        if (
            name != reference
            and report.verdict == "diverge"
            and report.status == "ok"
            and twins
            and criterion == "exact"
        ):
            judge_rounding(name, reports, trained, twins, reference, opts)
    for name in twins or {}:
        reports[name].amplification = amplification(name, reports[name], trained, twins)
    amplified = floor.outlier_note({n: reports[n].amplification for n in twins or {}})
    exports = export_cells(trained, planned)
    for saver, cells in (rerouted or {}).items():
        exports.setdefault(saver, {}).update(cells)
    for saver, cells in exports.items():
        portability.setdefault(saver, {}).update(cells)
    skip = set(references) | {fmt for row in exports.values() for fmt in row}
    settings = as_ran({**opts.settings(), "data": data, "backends": list(reports)}, ran, trained, reference)
    verdict = _overall(reports, named_skip, interrupted)
    notes = _notes(opts, marks, criterion, skipped, named_skip) + ([stand_in_note] if stand_in_note else [])
    if batches and not batches["identical"] and not interrupted:
        verdict = "nondeterministic"  # before any verdict on the model: its numbers were fed different data
    return CompareReport(
        verdict=verdict,
        batches=batches,
        reference=reference,
        settings=settings,
        criterion=judged,
        stochastic_layers=stochastic,
        notes=notes + ([amplified] if amplified else []),
        keras_version=ok[-1]["info"]["keras_version"] if ok else None,
        backends=reports,
        portability=portability,
        numpy_reference=numpy_cells,
        export_verdict=export_verdict(exports),
        portability_verdict=portability_verdict(portability, skip),
        timing=timing or {},
        start=shared_start(trained, planned),
        odd_one_out=odd,
        ran=ran,
        random=opts.run.random,
        stochastic_marks=marks,
    )
