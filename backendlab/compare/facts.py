"""What the workers' own accounts say beside training's verdict: the saved models loaded across backends
(portability), the exports, Keras's numpy backend as a reference, the batches each step was fed, the
start every backend loaded, and what really ran. Pure functions of the runs, no files, no framework."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from backendlab.compare.diff import diff_arrays
from backendlab.compare.results import CompareOptions
from backendlab.pipelines import ARRAYS, first_difference
from backendlab.text import plural

if TYPE_CHECKING:
    from backendlab.compare.verdict import LoadedRun, TrainedRun


def portability_cells(loader: str, saved: list[str], run: LoadedRun, trained: dict, opts: CompareOptions) -> dict:
    """saver -> the cell of ``loader``'s column: its predictions of the saver's model against the saver's own."""
    cells = {}
    for saver in saved:
        cell: dict = {"status": run.outcome.status, "message": run.outcome.message}
        if run.outcome.ok and saver in run.predictions:
            mine = run.predictions[saver]
            diff = diff_arrays(mine, trained[saver].arrays["predictions"], opts.rtol, opts.atol)
            cell = {"status": "agree" if diff.within else "diverge", **asdict(diff)}
        elif run.outcome.ok and saver in run.outcome.result.get("unloadable", {}):
            cell = {"status": COULD_NOT_LOAD, "message": run.outcome.result["unloadable"][saver]}
        elif run.outcome.ok:
            cell = {"status": "failed", "message": run.outcome.result["errors"].get(saver, "")}
        cells[saver] = cell
    return cells


#: A portability cell whose ``.keras`` file Keras would not load on that backend (its message says why).
COULD_NOT_LOAD = "could not load"


def portability_verdict(portability: dict[str, dict[str, dict]], skip: set) -> str | None:
    """The saved models' own verdict, apart from training's, from the cells of backends loading each other's
    files (``skip``: the other columns): failed where a loader failed otherwise, else could not load, else
    diverge where a loaded model predicted otherwise, else agree; None when none was loaded."""
    statuses = {c["status"] for row in portability.values() for loader, c in row.items() if loader not in skip}
    if not statuses:
        return None
    if statuses - {"agree", "diverge", COULD_NOT_LOAD}:
        return "failed"
    return COULD_NOT_LOAD if COULD_NOT_LOAD in statuses else "diverge" if "diverge" in statuses else "agree"


def numpy_reference(run: LoadedRun, trained: dict[str, TrainedRun], opts: CompareOptions) -> dict[str, dict]:
    """Each backend's starting predictions against a reference-only backend's (Keras's numpy backend)."""
    if not run.outcome.ok or "initial" not in run.predictions:
        reason = run.outcome.result["errors"].get("initial", "") if run.outcome.ok else run.outcome.message
        return {"_unavailable": {"message": f"Keras's numpy backend could not run this model: {reason}"}}
    cells = {}
    for backend, t in trained.items():
        if "initial_predictions" in t.arrays:
            diff = diff_arrays(t.arrays["initial_predictions"], run.predictions["initial"], opts.rtol, opts.atol)
            cells[backend] = {"status": "agree" if diff.within else "diverge", **asdict(diff)}
    return cells


def export_cells(trained: dict[str, TrainedRun], planned: list[str]) -> dict[str, dict[str, dict]]:
    """saver -> format -> the cell its worker measured: its export run in the format's runtime."""
    return {
        n: dict(trained[n].outcome.result.get("exports") or {})
        for n in planned
        if n in trained and trained[n].outcome.ok and trained[n].outcome.result.get("exports")
    }


def shared_start(trained: dict[str, TrainedRun], planned: list[str]) -> dict:
    """The start every backend loaded, as the first to train drew it: which variables it drew from the seed,
    which it kept as the model's build left them, which kept their backend's own value; {} if none drew any."""
    for name in planned:
        run = trained.get(name)
        variables = (run.outcome.result or {}).get("start_variables") if run and run.outcome.ok else None
        if variables and any(variables.values()):
            return {"made_by": name, **variables}
    return {}


def export_verdict(exports: dict[str, dict[str, dict]]) -> str | None:
    """The exports' own verdict: failed if any export failed, diverge if any predicted otherwise, else agree."""
    statuses = {cell["status"] for row in exports.values() for cell in row.values()}
    if not statuses:
        return None
    return "failed" if "failed" in statuses else "diverge" if "diverge" in statuses else "agree"


def batches_proof(trained: dict[str, TrainedRun], planned: list[str], reference: str) -> dict:
    """Whether every backend's training steps were fed the same batches, from each step's checksum.

    ``identical`` is false where a backend's checksums part from the reference's, or where a
    worker read the train pipeline twice before training and the reads differed (a pipeline that
    is not deterministic, even if every backend happened to see the same); ``first_differing_step``
    (from 1) is the earliest such step. A run stopped at a NaN or inf is compared as far as it went.
    Where the data has sample weights, each step's checksum covers them too (``sample_weights``).
    """
    runs = {
        n: trained[n].outcome.result
        for n in planned
        if n in trained and trained[n].outcome.ok and "batch_checksums" in (trained[n].outcome.result or {})
    }
    if not runs:
        return {}
    ref_name = reference if reference in runs else next(iter(runs))
    ref = runs[ref_name]
    found: list[tuple[int, str, str]] = []  # (step, backend, why)
    for name, run in runs.items():
        if run.get("repeat_differs_at"):
            found.append((run["repeat_differs_at"], name, "its train pipeline, made and read twice, differed"))
        if name == ref_name:
            continue
        mine, theirs = run["batch_checksums"], ref["batch_checksums"]
        if run.get("nonfinite") or ref.get("nonfinite"):
            mine, theirs = mine[: len(theirs)], theirs[: len(mine)]
        step = first_difference(theirs, mine)
        if step is not None:
            found.append((step, name, f"its batches differ from {ref_name}'s"))
    step, backend, why = min(found) if found else (None, None, None)
    kind = ref.get("input_kind", ARRAYS)
    weighted = "train" in ref.get("sample_weights", [])
    return {
        "identical": not found,
        "first_differing_step": step,
        "kind": kind,
        "steps": len(ref["batch_checksums"]),
        "backends": list(runs),
        "differing_backend": backend,
        "sample_weights": weighted,
        "message": (
            f"the {kind} input is not deterministic: at step {step}, {backend}: {why} "
            "(a shuffle without a seed, or a parallel map without a fixed order?)"
            if found
            else f"every backend was fed the same {kind} batches{' and sample weights' if weighted else ''} "
            f"at all {plural(len(ref['batch_checksums']), 'step')}"
        ),
    }


def ran_facts(trained: dict[str, TrainedRun], planned: list[str], reference: str) -> dict:
    """What really ran, from the workers' own account (``ran``): the reference's (else the first to
    report), with each backend's loop and ``jit_compile``, which a backend resolves for itself."""
    told = {
        n: trained[n].outcome.result["ran"]
        for n in planned
        if n in trained and trained[n].outcome.ok and "ran" in (trained[n].outcome.result or {})
    }
    if not told:
        return {}
    facts = dict(told.get(reference) or next(iter(told.values())))
    facts["loop"] = {n: f["loop"] for n, f in told.items()}
    facts["jit_compile"] = {n: f["jit_compile"] for n, f in told.items()}
    return facts


def as_ran(settings: dict, ran: dict, trained: dict[str, TrainedRun], reference: str) -> dict:
    """The settings with the batch size, optimizer and learning rate that ran in place of the flags'."""
    settings = dict(settings)
    if ran:
        settings["batch_size"] = ran["batch_size"]
    run = trained.get(reference)
    if run is not None and run.outcome.ok and "config" in (run.outcome.result or {}):
        config = run.outcome.result["config"]
        settings["optimizer"], settings["learning_rate"] = config["optimizer"], config["learning_rate"]
    return settings
