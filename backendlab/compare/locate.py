"""Where two backends part within one training step, and why: a pure function of two probes.

A probe (``backendlab.compare.probe``) takes one step apart on one backend: each layer's output
(``forward``), the loss terms (``loss``), each variable's gradient (``gradient``), what one
optimizer step changes (``update``) and the non-trainable changes of the forward pass
(``state``). :func:`locate` walks a reference probe and another backend's in that order and
names the first place that differs while everything upstream of it agrees.

How far apart: for each array, ``max|a - ref| / scale``, relative to the array's scale rather
than element by element, where ``scale`` is the array's largest reference magnitude but no less
than ``PHASE_FLOOR`` (1e-3) times the largest one of its phase. Float32 rounding is bounded
relative to the magnitudes a value was computed from, not to the value: a bias gradient that is
a sum of cancelling terms of size 1e-2 can come out 1e-9 on one backend and exactly 0 on another,
which element-wise (or against its own, vanishing scale) would read as a large difference. The
floor is a thousandth of the phase's largest value, so an array 1000 times smaller than its
phase's largest still has its own real differences measured in full.

An update or a state change is recorded as ``new - old``, exact only to float32's precision at
the variable's magnitude (one unit in the last place, 1.2e-7 of it), however small the change.
So where the probe gives a place's ``scale`` (the largest magnitude of the value changed), the
change is measured against at least ``VALUE_FLOOR`` (a tenth) of it: a difference of a few units
in the last place then reads as about 1e-6, and a change that differs by a thousandth of the
variable still reads as 1e-2.

A model that computes in a narrower dtype (a mixed precision policy) rounds far more: the threshold
follows its epsilon (:func:`threshold_for`).

NumPy only: the orchestrator imports no framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from backendlab.compare.diff import EPSILON
from backendlab.compare.results import OUTSIDE, PORTABLE, stochastic_marks

PHASES = ("forward", "loss", "gradient", "update", "state")
#: The phases of an evaluation probe: each layer's output in inference, evaluate's loss, and its metrics.
EVALUATE_PHASES = ("forward", "loss", "metrics")

#: float32's machine epsilon is 1.19e-7. A forward pass, a backward pass or an adaptive
#: optimizer's division by sqrt(velocity) leaves differences of up to about 1e-6 between backends
#: (measured: GRU + RMSprop updates, 1.0e-6), so 1e-5, about 100 eps, separates a real difference
#: from rounding with a margin of ten; the differences this looks for are 1e-3 and more.
DEFAULT_THRESHOLD = 1e-5

#: In a narrower compute dtype, a place is named from this many units of its rounding. bfloat16
#: (eps 7.8e-3) left up to 4.9e-2 (6.3 eps) between backends in a mixed_bfloat16 step (measured: a
#: two-layer Dense under Adam, JAX against TensorFlow and PyTorch, the largest in Adam's update), so
#: twenty units, 0.16, keeps a margin of three.
ROUNDING_UNITS = 20


def threshold_for(compute_dtype: str) -> float:
    """The default threshold for a model computing in ``compute_dtype``: float32's, or 20 of its epsilons if larger."""
    return max(DEFAULT_THRESHOLD, ROUNDING_UNITS * EPSILON.get(compute_dtype, 0.0))


#: An array's scale is at least this fraction of the largest magnitude in its phase (see above).
PHASE_FLOOR = 1e-3

#: A change is measured against at least this fraction of the value it changed (see above).
VALUE_FLOOR = 0.1

#: The smallest scale of all, so that a phase of zeros (no state changes) divides by something.
ABS_FLOOR = 1e-12

#: A place is named only if it differs this many times more than anything upstream of it; less is
#: taken for rounding that grew on its way through the network (a saturated softmax, a long RNN).
JUMP = 10.0

Arrays = Mapping[str, np.ndarray]


@dataclass
class Divergence:
    """The first place a backend's step differs from the reference's; ``phase`` None: none stands out."""

    step: int | None  # the training step probed, as the caller counts it
    phase: str | None  # forward | loss | gradient | update | state
    layer: str | None
    layer_class: str | None
    variable: str | None  # a variable's path (gradient, update, state), or the loss term
    abs: float
    rel: float
    upstream_max_rel: float  # the largest relative difference anywhere upstream of it
    explanation: str  # one sentence for a person
    # What was taken apart: a training step, or evaluate (or predict) on the test set from trained weights.
    during: str = "training"

    @classmethod
    def nowhere(
        cls, step: int | None, gap: float, rel: float, explanation: str, during: str = "training"
    ) -> Divergence:
        """No place stands out: ``gap`` and ``rel`` are the largest differences anywhere, and why none is named."""
        return cls(step, None, None, None, None, gap, rel, rel, explanation, during)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Divergence:
        return cls(**d)


def magnitude(reference) -> float:
    """The largest finite magnitude in an array (0 for none)."""
    r = np.asarray(reference, dtype=np.float64)
    return float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0))


def phase_floors(reference_arrays: Arrays) -> dict[str, float]:
    """Per phase: the scale below which none of its arrays is measured (see the module's docstring)."""
    floors = dict.fromkeys(PHASES, ABS_FLOOR)
    for key, array in reference_arrays.items():
        phase = phase_of(key)
        floors[phase] = max(floors.get(phase, ABS_FLOOR), PHASE_FLOOR * magnitude(array))
    return floors


def difference(values, reference, floor: float = ABS_FLOOR) -> tuple[float, float]:
    """``(max |a - ref|, that over max(max|ref|, floor))``; NaN on one side only, or unequal shapes: inf."""
    a = np.asarray(values, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    gap = np.where(np.isnan(a) & np.isnan(r), 0.0, np.abs(a - r))
    gap = np.where(np.isnan(gap), np.inf, gap)
    scale = max(magnitude(r), floor, ABS_FLOOR)
    worst = float(gap.max())
    return worst, worst / scale


def phase_of(key: str) -> str:
    return key.split("/", 1)[0]


def _places(reference_arrays: Arrays, manifest: Mapping | None) -> list[dict]:
    """The places in walking order: the manifest's, or the arrays' keys phase by phase."""
    listed = list((manifest or {}).get("places") or [])
    known = {p["key"] for p in listed}
    rest = [{"key": k, "phase": phase_of(k)} for k in sorted(reference_arrays) if k not in known]
    places = [p for p in listed if p["key"] in reference_arrays] + rest
    return sorted(places, key=lambda p: PHASES.index(p["phase"]) if p["phase"] in PHASES else len(PHASES))


def _what(place: dict) -> str:
    phase, layer, cls, variable = place["phase"], place.get("layer"), place.get("layer_class"), place.get("variable")
    named = f"{layer} ({cls})" if layer and cls else (layer or place["key"])
    if phase == "forward":
        return f"the output of layer {named}"
    if phase == "loss":
        if place["key"].startswith("loss/regularization/"):
            return f"the regularization loss of {variable} in layer {named}"
        if variable:
            return variable
        function = f" ({place['function']})" if place.get("function") else ""
        return f"the loss of output {layer}" if layer else f"the total loss{function}"
    subject = variable or place["key"].split("/", 1)[-1]
    return {
        "metrics": f"the metric {subject}",
        "gradient": f"the gradient of {subject}",
        "update": f"the update of {subject}",
        "state": f"the change of {subject} in the forward pass",
    }.get(phase, subject)


_UPSTREAM = {
    "forward": "the layers before it agree",
    "loss": "the forward pass agrees",
    "gradient": "the forward pass, the loss and the gradients of the layers after it agree",
    "update": "the forward pass, loss and gradients agree",
    "state": "the forward pass, loss, gradients and updates agree",
    "metrics": "the forward pass and the loss agree",
}


def _agreement(phase: str, upstream: float, seen_upstream: bool) -> str:
    if not seen_upstream:
        return "it is the first thing computed"
    agree = _UPSTREAM.get(phase, "everything before it agrees")
    return f"{agree} exactly" if upstream == 0 else f"{agree} to {upstream:.0e}"


def locate(
    reference_arrays: Arrays,
    reference_manifest: Mapping | None,
    mine_arrays: Arrays,
    mine_manifest: Mapping | None,
    *,
    step: int | None,
    threshold_rel: float = DEFAULT_THRESHOLD,
    during: str = "training",
    compute_dtype: str = "float32",
) -> Divergence:
    """The first place, phase by phase, whose relative difference exceeds ``threshold_rel`` while
    all upstream agrees; ``phase`` None with the reason when none stands out.

    Within ``forward`` and ``gradient`` the walk follows the computation (layers in execution
    order, gradients from the output back), and a place counts as upstream of every later one.
    Updates and state changes of different variables do not feed each other: there only the
    earlier phases are upstream. A place is named only if it also differs :data:`JUMP` times
    more than its upstream, so rounding amplified on its way is not blamed on where it surfaced.
    ``during``: what the probes took apart (a training step, or evaluate or predict), as it is reported.
    ``compute_dtype``: what the model computes in, named as the rounding when nothing stands out.
    """
    upstream = 0.0
    seen_upstream = False
    phase_start = {}  # the upstream maximum as each phase began
    first_over: tuple[dict, float, float] | None = None
    worst: tuple[dict, float, float] | None = None
    compared = 0
    floors = phase_floors(reference_arrays)
    for place in _places(reference_arrays, reference_manifest):
        key, phase = place["key"], place["phase"]
        if key not in mine_arrays:
            continue
        if phase not in phase_start:
            phase_start[phase] = upstream
        before = upstream if phase in ("forward", "loss", "gradient") else phase_start[phase]
        floor = max(floors.get(phase, ABS_FLOOR), VALUE_FLOOR * float(place.get("scale") or 0.0))
        gap, rel = difference(mine_arrays[key], reference_arrays[key], floor)
        compared += 1
        if worst is None or rel > worst[2]:
            worst = (place, gap, rel)
        if rel > threshold_rel:
            first_over = first_over or (place, gap, rel)
            if rel > JUMP * before:
                return Divergence(
                    step,
                    phase,
                    place.get("layer"),
                    place.get("layer_class"),
                    place.get("variable"),
                    gap,
                    rel,
                    before,
                    f"{_what(place)} differs by {gap:.1e} (relative {rel:.1e}) while "
                    f"{_agreement(phase, before, seen_upstream)}" + _stochastic_note(place, mine_manifest),
                    during,
                )
        upstream = max(upstream, rel)
        seen_upstream = True
    if compared == 0:
        return Divergence.nowhere(step, 0.0, 0.0, "the two probes have no place in common", during)
    place, gap, rel = worst
    if first_over is None:
        return Divergence.nowhere(
            step,
            gap,
            rel,
            f"no place differs by more than {threshold_rel:.0e} relative: the largest difference, "
            f"{rel:.1e} in {_what(place)}, is {compute_dtype} rounding spread over the whole {_unit(during)}",
            during,
        )
    start, start_gap, start_rel = first_over
    return Divergence.nowhere(
        step,
        gap,
        rel,
        f"no single place stands out: differences grow gradually from {start_rel:.1e} in {_what(start)} "
        f"to {rel:.1e} in {_what(place)}, as rounding amplified through the {_unit(during)}",
        during,
    )


def _unit(during: str) -> str:
    return "step" if during == "training" else "evaluation" if during == "evaluate" else "prediction"


def _stochastic_note(place: dict, manifest: Mapping | None) -> str:
    """What a stochastic layer where training first parts draws from, by its mark (results.stochastic_marks)."""
    manifest = manifest or {}
    stochastic = manifest.get("stochastic_layers") or []
    if place["phase"] != "forward" or place.get("layer") not in stochastic:
        return ""
    # A probe from before --random existed ran each backend's own generators.
    random = manifest.get("random", "backend")
    mark = stochastic_marks(stochastic, manifest.get("stochastic_outside") or [], random, False)[place["layer"]]
    if mark == OUTSIDE:
        return (
            " (a layer drawing from its framework's own generator, outside Keras's random ops: each backend draws "
            "its own numbers; --disable-stochastic turns it off)"
        )
    if mark == PORTABLE:
        return (
            " (a stochastic layer drawing portably: every backend draws the same numbers here, so a difference "
            "that starts in it is not its randomness; please report it)"
        )
    return (
        " (a stochastic layer: each backend draws its own random numbers; --random portable draws the same, "
        "--disable-stochastic turns it off)"
    )


def phases_table(reference_arrays: Arrays, mine_arrays: Arrays, phases: tuple[str, ...] = PHASES) -> list[dict]:
    """Per phase: how many arrays both probes hold, the largest differences and the key of the worst."""
    rows = []
    floors = phase_floors(reference_arrays)
    for phase in phases:
        keys = sorted(k for k in reference_arrays if phase_of(k) == phase and k in mine_arrays)
        diffs = {k: difference(mine_arrays[k], reference_arrays[k], floors.get(phase, ABS_FLOOR)) for k in keys}
        worst = max(keys, key=lambda k: diffs[k][1], default=None)
        rows.append(
            {
                "phase": phase,
                "compared": len(keys),
                "max_abs": max((d[0] for d in diffs.values()), default=0.0),
                "max_rel": max((d[1] for d in diffs.values()), default=0.0),
                "worst": worst,
            }
        )
    return rows


def evaluation_window(mine: Arrays, reference: Arrays, samples: int, batch_size: int, limit: int) -> tuple[int, int]:
    """The test samples whose layer outputs an evaluation probe records: all of them if they are ``limit`` or
    fewer, else whole batches, ``limit`` samples at most, from the batch of the sample whose predictions
    (``mine`` against ``reference``, under the same keys, samples first) differ most."""
    if samples <= limit:
        return 0, samples
    gaps = np.zeros(samples)
    for key, ref in reference.items():
        a, r = np.asarray(mine.get(key, ref), np.float64), np.asarray(ref, np.float64)
        if a.shape == r.shape and r.ndim and len(r) == samples:
            gap = np.nan_to_num(np.abs(a - r).reshape(samples, -1), nan=np.inf).max(axis=1, initial=0.0)
            gaps = np.maximum(gaps, gap)
    batches = max(limit // batch_size, 1)
    start = int(np.argmax(gaps)) // batch_size * batch_size
    return start, min(start + batches * batch_size, samples)
