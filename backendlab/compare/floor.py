"""float32's noise floor, measured on the model itself: pure functions, NumPy only.

A backend that leaves the exact tolerance may still differ from the reference by no more than
rounding does to this model. To tell, compare trains perturbed *twins* of the shared start, on the
reference and on that backend: every float weight moved by one unit in the last place, up or down
as a seeded generator says, and the same batches. How far a twin ends from its own backend's
unperturbed run is what a rounding-level change of the start does on this model; the largest such
spread, over every twin of both backends, is the floor. (CESM's ensemble consistency test judges a
new platform's run the same way: against an ensemble perturbed at the rounding level; Baker et
al. 2015, Milroy et al. 2018.)

A backend agrees *within rounding* when every quantity that left the tolerance is no further from
the reference than :data:`FACTOR` times its floor, and the per-step losses so at every step. One
scalar loss per step is one sample of a twin's spread, which can come close to zero at a step by
chance; so a step's floor is the largest spread within :data:`WINDOW` steps of it.

The *amplification* of a backend is how far its twins' final predictions are from its own
unperturbed run's, relative to the predictions' scale, divided by float32's epsilon (the relative
size of a 1-ulp change): how many times training grew a 1-ulp change of the start. (Not divided by
the twins' starting predictions' distance: a model can start insensitive to 1 ulp, MobileNetV3's
near-uniform first predictions are bit-identical.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: A backend's difference to the reference may be this many times its floor and still be rounding.
#: Twins differ from their own backend only in the start; two backends also round differently at
#: every step, which a handful of twins sample only roughly. Measured: the zoo cnn over 40 epochs (1800
#: steps) is at most 1.9x its floor on TensorFlow and PyTorch; a skew of 1e-5 in one layer's output is 81x
#: (1e-4: 798x) on a small dense network (tests/cross/test_floor.py).
FACTOR = 10.0

#: A step's floor is the largest spread within this many steps either side of it (see the module's doc).
WINDOW = 2

#: How many perturbed twins each backend trains, with seeds 1..TWINS.
TWINS = 2

#: One backend is named as amplifying more than another when its amplification is this many times larger.
OUTLIER = 100.0

Arrays = Mapping[str, np.ndarray]


def perturb(weights: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """Every float weight moved by one unit in the last place, up or down as ``seed`` draws; the others kept.

    The same seed moves the same weights the same way on every backend: the twins of one seed share a start.
    """
    rng = np.random.default_rng(seed)
    out = []
    for w in weights:
        w = np.asarray(w)
        if not np.issubdtype(w.dtype, np.floating):
            out.append(w)
            continue
        direction = np.where(rng.random(w.shape) < 0.5, -np.inf, np.inf).astype(w.dtype)
        out.append(np.nextafter(w, direction).astype(w.dtype))
    return out


def _gap(a, b) -> np.ndarray:
    """``|a - b|`` in float64; NaN where either is not finite (no floor says anything there)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = min(a.size, b.size)
    gap = np.abs(a[:n] - b[:n])
    return np.where(np.isfinite(gap), gap, np.nan)


def step_spread(twins: Sequence[Sequence[float]], base: Sequence[float]) -> np.ndarray:
    """At each step, the largest ``|twin - base|`` over the twins (NaN where a loss was not finite)."""
    gaps = [_gap(t, base) for t in twins]
    n = min((g.size for g in gaps), default=0)
    if not n:
        return np.zeros(0)
    stacked = np.stack([g[:n] for g in gaps])
    return np.where(np.isnan(stacked).any(0), np.nan, np.nanmax(np.nan_to_num(stacked, nan=0.0), axis=0))


def windowed(spread: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Each step's floor: the largest spread within ``window`` steps of it (NaN if any of those is NaN)."""
    if spread.size == 0:
        return spread
    padded = np.pad(spread, window, mode="edge")
    views = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1)
    return np.where(np.isnan(views).any(1), np.nan, np.nanmax(np.nan_to_num(views, nan=0.0), axis=1))


def array_spread(twins: Sequence[Arrays], base: Arrays) -> float:
    """The largest ``|twin - base|`` over every array of every twin; inf where the keys or shapes differ."""
    worst = 0.0
    for twin in twins:
        if set(twin) != set(base):
            return float("inf")
        for key, value in twin.items():
            a, b = np.asarray(value, np.float64), np.asarray(base[key], np.float64)
            if a.shape != b.shape:
                return float("inf")
            if a.size:
                gap = np.abs(a - b)
                worst = max(worst, float(np.max(np.where(np.isfinite(gap), gap, np.inf))))
    return worst


def relative_spread(twins: Sequence[Arrays], base: Arrays) -> float:
    """The largest ``|twin - base| / max|base|`` over the arrays: how far apart, relative to the values' scale."""
    scale = max((float(np.max(np.abs(np.asarray(v, np.float64)))) for v in base.values() if np.size(v)), default=0.0)
    return array_spread(twins, base) / scale if scale > 0 else float("inf")


#: The relative size of a 1-ulp change of a float32 weight (at most; half of it at a power of two).
ULP = float(np.finfo(np.float32).eps)


def amplification(end: float) -> float | None:
    """How many times training grew a 1-ulp change of the start: the twins' final relative spread over ``ULP``."""
    return end / ULP if np.isfinite(end) else None


@dataclass
class Floor:
    """A compared backend's difference to the reference beside the floor of both: what report.json keeps."""

    factor: float
    twins: int  # perturbed twins of each backend
    step_floor: list  # per step: the floor (the larger of both backends' windowed spreads)
    step_difference: list  # per step: |loss - reference's loss|
    quantities: dict  # quantity -> {"difference": max_abs, "floor": the twins' largest spread, "within": ...}
    within: bool  # every step and every quantity within the tolerance or within factor * floor
    worst_step: int | None  # 1-based: where the difference is largest against its floor
    worst_ratio: float | None  # difference / floor there

    def to_dict(self) -> dict:
        return asdict(self)


def judge(
    difference: Sequence[float],
    tolerance: Sequence[float],
    spreads: Sequence[np.ndarray],
    quantities: Mapping[str, tuple[float, bool, float]],
    twins: int,
    factor: float = FACTOR,
) -> Floor:
    """Whether a backend differs from the reference only as much as rounding does.

    ``difference``: per step ``|loss - reference's|``; ``tolerance``: per step, what the exact check
    allows (``atol + rtol * |reference|``); ``spreads``: per step, each backend's twins' spread (the
    reference's and this backend's); ``quantities``: name -> (difference, whether within the tolerance,
    the twins' largest spread) for the other quantities. A step or quantity within the tolerance needs no
    floor; one outside must be within ``factor`` times it.
    """
    diff = np.asarray(difference, np.float64)
    tol = np.asarray(tolerance, np.float64)
    n = min([diff.size, tol.size, *(s.size for s in spreads)])
    floor = np.max(np.stack([windowed(s[:n]) for s in spreads]), axis=0) if n else np.zeros(0)
    diff, tol = diff[:n], tol[:n]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff <= tol, 0.0, diff / floor)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)  # a NaN loss or floor: nothing within rounding
    steps_within = n == len(difference) and bool(np.all(ratio <= factor))
    judged = {
        name: {"difference": d, "floor": f, "within": bool(ok or d <= factor * f)}
        for name, (d, ok, f) in quantities.items()
    }
    worst = int(np.argmax(ratio)) if n else None
    return Floor(
        factor=factor,
        twins=twins,
        step_floor=[None if np.isnan(v) else float(v) for v in floor],
        step_difference=[None if np.isnan(v) else float(v) for v in diff],
        quantities=judged,
        within=steps_within and all(q["within"] for q in judged.values()),
        worst_step=None if worst is None else worst + 1,
        worst_ratio=None if worst is None else float(ratio[worst]),
    )


def ratio(difference: float, floor: float) -> float:
    """How many times its floor a difference is: inf over a floor of 0, 0 for no difference."""
    if not difference:
        return 0.0
    return difference / floor if floor else float("inf")


def outlier_note(amplifications: Mapping[str, float | None], threshold: float = OUTLIER) -> str | None:
    """``tensorflow amplifies rounding 4×10⁴ times more than jax on this model``, where one stands out."""
    known = {b: a for b, a in amplifications.items() if a is not None and a > 0}
    if len(known) < 2:
        return None
    high = max(known, key=known.get)
    low = min(known, key=known.get)
    times = known[high] / known[low]
    if times < threshold:
        return None
    return (
        f"{high} amplifies rounding {_times(times)} times more than {low} on this model: a 1-ulp change of the "
        f"start grows {_times(known[high])}-fold over training on {high} and {_times(known[low])}-fold on {low}. "
        "This is the model's sensitivity to rounding on that backend, not a difference in the math."
    )


def _times(x: float) -> str:
    """``4×10⁴`` for 4.1e4; plain below 1000."""
    if x < 1000:
        return f"{x:.3g}"
    exponent = int(np.floor(np.log10(x)))
    superscript = str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{x / 10**exponent:.2g}×10{superscript}"
