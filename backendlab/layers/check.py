"""The parity helper's core (public as :mod:`backendlab.testing`): the orchestrator of a layer's checks.

Each backend runs in a warm pool worker (:mod:`backendlab.workers.runner`) the jobs of
:mod:`backendlab.layers.worker`; this module imports no framework. The reference backend's job
writes the weights the others take; then each backend's outputs, gradients and (with ``saving``)
saved ``.keras`` files are checked against the reference's (see :mod:`backendlab.testing`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backendlab import display
from backendlab.backends import plan
from backendlab.callables import by_reference, name_of, send
from backendlab.compare.diff import Diff
from backendlab.errors import UsageError
from backendlab.layers.worker import ARRAYS, WEIGHTS, handle
from backendlab.specs import SENT_SUFFIX, check_spec, is_callable_spec
from backendlab.workers.protocol import Job
from backendlab.workers.runner import WorkerPool, shared_pool

#: Relative and absolute tolerance, for outputs and gradients alike.
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-6
#: The longest one backend's job may take before it counts as hung.
JOB_TIMEOUT_S = 600.0


@dataclass
class Check:
    """One tensor on one backend against the same tensor elsewhere."""

    backend: str  # whose numbers are checked
    against: str  # whose numbers they should equal
    what: str  # "output 0", "gradient of dense/kernel", "torch's .keras loaded on jax"
    max_abs: float
    max_rel: float
    ok: bool
    detail: str = ""  # why the numbers could not be compared (a shape, a failed load), or how

    @property
    def label(self) -> str:
        return self.what if ".keras" in self.what else f"{self.backend} vs {self.against}, {self.what}"

    def line(self, rtol: float, atol: float) -> str:
        if self.detail and not np.isfinite(self.max_abs):
            return f"{self.label}: {self.detail}"
        numbers = f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}"
        if self.detail:
            return f"{self.label}: {numbers} ({self.detail})"
        return f"{self.label}: {numbers}" + ("" if self.ok else f" (tolerance rtol={rtol:g}, atol={atol:g})")


@dataclass
class ParityReport:
    factory: str
    reference: str
    backends: list[str]
    rtol: float
    atol: float
    checks: list[Check] = field(default_factory=list)
    #: With ``training=True``: per backend, the largest gap between its training- and inference-mode outputs.
    training_vs_inference: dict[str, float] = field(default_factory=dict)
    #: Per backend, what was not checked and why (integer inputs have no gradient).
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def lines(self) -> list[str]:
        """One line per check, then the training-vs-inference gaps and what was skipped."""
        out = [f"{'ok  ' if c.ok else 'FAIL'}  {c.line(self.rtol, self.atol)}" for c in self.checks]
        out += [
            f"info  {b}: training vs inference mode, max abs {gap:.3g}" for b, gap in self.training_vs_inference.items()
        ]
        out += [f"note  {b}: {note}" for b, notes in self.notes.items() for note in notes]
        return out

    def summary(self) -> str:
        """The last line ``backendlab check-layer`` prints: all agree, or how many do not."""
        if self.failures:
            return f"{len(self.failures)} of {len(self.checks)} checks disagree across {', '.join(self.backends)}"
        return f"all {len(self.checks)} checks agree across {', '.join(self.backends)}"

    def __repr__(self) -> str:
        return display.text(self, "backendlab.layers.check:renderables")

    def _repr_html_(self) -> str:
        return display.html(self, "backendlab.layers.check:renderables")

    def message(self) -> str:
        head = (
            f"{len(self.failures)} of {len(self.checks)} checks disagree across backends "
            f"(layer {self.factory}, reference {self.reference}, rtol={self.rtol:g}, atol={self.atol:g}):"
        )
        return "\n".join([head, *(c.line(self.rtol, self.atol) for c in self.failures)])


def renderables(report: ParityReport) -> list[str]:
    """What ``backendlab check-layer`` prints: one line per check, then the summary."""
    return [*report.lines(), report.summary()]


class BackendsDisagree(AssertionError):
    """Raised by :func:`assert_backends_agree` when a check fails; ``report`` holds every check."""

    def __init__(self, report: ParityReport):
        super().__init__(report.message())
        self.report = report


# --- what the caller gave --------------------------------------------------------------------


def factory_spec(factory: Callable[[], Any] | Any | str, folder: str | Path | None = None) -> str:
    """What the workers build the layer from: ``path/to/file.py:name`` for a module-level function (they
    import it by name), else ``folder/layer.pkl:name``, the factory sent by value (:mod:`backendlab.callables`).

    ``factory`` may be a string, any callable that returns a keras Layer or Model (a lambda, a closure, a
    class, a function from a notebook or ``__main__``), or a ``keras.Model`` itself.
    """
    if isinstance(factory, str):
        if not is_callable_spec(factory):
            raise UsageError(f"layer factory {factory!r} must look like path/to/file.py:function")
        check_spec(factory, "layer factory")  # read with ast: importing it could import a framework
        return factory
    by_name = by_reference(factory)
    if by_name is not None:
        return by_name
    if folder is None:
        raise TypeError(f"factory {name_of(factory)} goes to the workers by value: give a folder to write it to")
    return send(factory, "layer factory", folder, "layer")


def write_inputs(inputs, path: Path) -> dict:
    """The inputs as one ``.npz`` and the layout to rebuild them: one array, a list, or a dict of arrays."""
    if isinstance(inputs, Mapping):
        kind, named = "dict", {str(k): v for k, v in inputs.items()}
    elif isinstance(inputs, (list, tuple)):
        kind, named = "list", {f"input_{i}": v for i, v in enumerate(inputs)}
    else:
        kind, named = "array", {"input_0": inputs}
    arrays = {key: np.asarray(value) for key, value in named.items()}
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf" or array.ndim == 0:
            raise TypeError(
                f"inputs must be NumPy arrays of numbers with a batch axis; {key} is {array.dtype} {array.shape}"
            )
    np.savez(path, **arrays)
    return {"kind": kind, "keys": list(arrays)}


def input_names(layout: dict) -> list[str]:
    """The inputs' names in the order Keras flattens them (a dict's keys sorted)."""
    if layout["kind"] == "dict":
        return [f"input {key!r}" for key in sorted(layout["keys"])]
    return [f"input {i}" for i in range(len(layout["keys"]))]


# --- comparing ---------------------------------------------------------------------------------


def compare(values, reference, rtol: float, atol: float) -> tuple[float, float, bool, str]:
    """``(max_abs, max_rel, ok, detail)``: floats within tolerance, anything else exactly equal."""
    v, r = np.asarray(values), np.asarray(reference)
    if v.shape != r.shape:
        return float("inf"), float("inf"), False, f"shape {v.shape} vs {r.shape}"
    diff = Diff.of(v.astype(np.float64), r.astype(np.float64), rtol, atol)
    if np.issubdtype(r.dtype, np.floating) and np.issubdtype(v.dtype, np.floating):
        return diff.max_abs, diff.max_rel, diff.within, ""
    unequal = int(np.count_nonzero(v != r))
    detail = f"{unequal} of {r.size} values differ; not floats, compared exactly" if unequal else ""
    return diff.max_abs, diff.max_rel, unequal == 0, detail


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {key: stored[key] for key in stored.files}


def _check(backend: str, against: str, what: str, values, reference, rtol: float, atol: float) -> Check:
    if values is None or reference is None:
        missing = backend if values is None else against
        return Check(backend, against, what, float("inf"), float("inf"), False, f"{missing} has none")
    return Check(backend, against, what, *compare(values, reference, rtol, atol))


def tensor_checks(backend: str, reference: str, results: dict, arrays: dict, layout: dict, rtol, atol) -> list[Check]:
    """Outputs and gradients of ``backend`` against the reference's, under the reference's names."""
    mine, theirs = arrays[backend], arrays[reference]
    names = {"inference": "output {}", "training": "output {} (training)", "gradient/input": "gradient of {}"}
    inputs = input_names(layout)
    weights = results[reference]["trainable"]
    checks = []
    for key in sorted(set(mine) | set(theirs), key=_natural):
        group, _, index = key.rpartition("/")
        if group == "saved":
            continue
        i = int(index)
        if group == "gradient/weight":
            what = f"gradient of {weights[i] if i < len(weights) else f'weight {i}'}"
        elif group == "gradient/input":
            what = names[group].format(inputs[i] if i < len(inputs) else f"input {i}")
        else:
            what = names[group].format(i)
        checks.append(_check(backend, reference, what, mine.get(key), theirs.get(key), rtol, atol))
    return checks


def _natural(key: str) -> tuple:
    group, _, index = key.rpartition("/")
    order = ["inference", "training", "gradient/input", "gradient/weight", "saved"]
    return (order.index(group) if group in order else len(order), int(index) if index.isdigit() else 0)


def training_gap(arrays: dict[str, np.ndarray]) -> float:
    gaps = [
        compare(arrays[f"training/{key.split('/')[1]}"], value, 0.0, 0.0)[0]
        for key, value in arrays.items()
        if key.startswith("inference/") and f"training/{key.split('/')[1]}" in arrays
    ]
    return max(gaps, default=0.0)


# --- running -----------------------------------------------------------------------------------


def _failed(outcomes, reference: str) -> AssertionError | None:
    bad = [o for o in outcomes if not o.ok]
    if not bad:
        return None
    lines = [
        f"the layer check failed on {o.backend}{' (the reference)' if o.backend == reference else ''}: {o.message}"
        for o in bad
    ]
    return AssertionError("\n".join(lines))


def run_checks(
    spec: str,
    inputs,
    names: list[str],
    pool: WorkerPool,
    folder: Path,
    *,
    rtol: float,
    atol: float,
    training: bool,
    gradients: bool,
    saving: bool,
    seed: int,
) -> ParityReport:
    """Every backend's jobs and the report; a backend whose job fails raises AssertionError with its error."""
    reference, others = names[0], names[1:]
    layout = write_inputs(inputs, folder / "inputs.npz")
    job = {
        "kind": "check",
        "factory": spec,
        "inputs": str(folder / "inputs.npz"),
        "layout": layout,
        "seed": seed,
        "training": training,
        "gradients": gradients,
        "saving": saving,
        "weights": None,
        "reference": reference,
    }
    # The reference alone first: it makes the weights the others load.
    first = pool.run(reference, handle, job, folder / reference, timeout=JOB_TIMEOUT_S)
    if (error := _failed([first], reference)) is not None:
        raise error
    shared = {**job, "weights": str(folder / reference / WEIGHTS)}
    rest = pool.run_many([Job(b, handle, shared, folder / b, JOB_TIMEOUT_S) for b in others]) if others else []
    if (error := _failed(rest, reference)) is not None:
        raise error
    results = {o.backend: o.result for o in (first, *rest)}
    arrays = {b: _load(folder / b / ARRAYS) for b in names}
    report = ParityReport(
        shown_spec(spec), reference, names, rtol, atol, notes={b: r["notes"] for b, r in results.items()}
    )
    for backend in others:
        report.checks += tensor_checks(backend, reference, results, arrays, layout, rtol, atol)
    if training:
        report.training_vs_inference = {b: training_gap(arrays[b]) for b in names}
    if saving:
        report.checks += saving_checks(names, pool, job, results, arrays, folder, rtol, atol)
    return report


def saving_checks(names, pool, job, results, arrays, folder: Path, rtol, atol) -> list[Check]:
    """Every backend loads every backend's ``.keras``; its outputs against the saver's."""
    models = {b: results[b]["model"] for b in names}
    load = {key: job[key] for key in ("factory", "inputs", "layout")}
    tasks = [
        Job(b, handle, {**load, "kind": "load", "models": models}, folder / f"load-{b}", JOB_TIMEOUT_S) for b in names
    ]
    outcomes = pool.run_many(tasks)
    if (error := _failed(outcomes, names[0])) is not None:
        raise error
    checks = []
    for saver in names:
        for loader, outcome in zip(names, outcomes):
            what = f"{saver}'s .keras loaded on {loader}"
            if saver in outcome.result["errors"]:
                error = outcome.result["errors"][saver]
                checks.append(Check(loader, saver, what, float("inf"), float("inf"), False, f"cannot load: {error}"))
                continue
            loaded = _load(folder / f"load-{loader}" / outcome.result["loaded"][saver])
            saved = {k: v for k, v in arrays[saver].items() if k.startswith("saved/")}
            for key in sorted(set(saved) | set(loaded), key=_natural):
                label = what if len(saved) == 1 else f"{what}, output {key.split('/')[1]}"
                checks.append(_check(loader, saver, label, loaded.get(key), saved.get(key), rtol, atol))
    return checks


def assert_backends_agree(
    factory: Callable[[], Any] | str,
    inputs,
    *,
    backends: Sequence[str] | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    training: bool = False,
    gradients: bool = True,
    saving: bool = True,
    seed: int = 0,
    pool: WorkerPool | None = None,
) -> ParityReport:
    """Raise AssertionError unless the layer ``factory()`` makes computes the same on every backend.

    ``factory``: a function or class that returns a keras Layer or Model, from a module, a test file,
    a notebook cell or ``__main__`` (a lambda or a closure too: see :mod:`backendlab.callables`), its
    ``path/to/file.py:name``, or a ``keras.Model`` itself. ``inputs``: a NumPy array, or a list or dict of them,
    with the batch axis first. ``backends``: default every installed one; the first is the
    reference. ``seed`` seeds the layer's initial weights and the gradients' cotangent. ``pool``:
    warm workers to reuse (default :func:`~backendlab.workers.shared_pool`).

    Returns the :class:`ParityReport` (every check with its differences) when all agree.
    """
    with tempfile.TemporaryDirectory(prefix="backendlab-parity-") as tmp:
        # The factory first, then the backends: a mistake in the user's code is named wherever it runs.
        spec = factory_spec(factory, Path(tmp) / "sent")  # before any worker starts: what cannot be sent says so
        names = plan(backends, only_installed=True).run
        report = run_checks(
            spec,
            inputs,
            names,
            pool or shared_pool(),
            Path(tmp),
            rtol=rtol,
            atol=atol,
            training=training,
            gradients=gradients,
            saving=saving,
            seed=seed,
        )
    if report.failures:
        raise BackendsDisagree(report)
    return report


def shown_spec(spec: str) -> str:
    """The factory as the message shows it: its name, in a path relative to the working directory
    (sent by value, its name alone: the file is gone once the check ends)."""
    target, _, name = spec.rpartition(":")
    if target.endswith(SENT_SUFFIX):
        return name
    try:
        target = str(Path(target).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        pass
    return f"{target}:{name}"
