"""How far two backends' numbers are apart. NumPy only: the orchestrator imports no framework."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Machine epsilon of the float dtypes a model computes in: the gap from 1 to the next number.
EPSILON = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}


@dataclass
class Diff:
    """The largest differences of one quantity against the reference.

    ``max_rel`` is relative to ``max(|reference|, atol)``, so values near zero do not
    blow it up; ``within`` is NumPy's allclose rule: ``|a - ref| <= atol + rtol * |ref|``.
    """

    max_abs: float
    max_rel: float
    within: bool
    count: int  # how many numbers were compared

    @classmethod
    def of(cls, values, reference, rtol: float, atol: float) -> Diff:
        a = np.asarray(values, dtype=np.float64).ravel()
        r = np.asarray(reference, dtype=np.float64).ravel()
        if a.shape != r.shape:
            return cls(float("inf"), float("inf"), False, 0)
        if a.size == 0:
            return cls(0.0, 0.0, True, 0)
        both_nan = np.isnan(a) & np.isnan(r)
        gap = np.where(both_nan, 0.0, np.abs(a - r))
        gap = np.where(np.isnan(gap), np.inf, gap)
        rel = gap / np.maximum(np.abs(np.nan_to_num(r)), atol)
        within = bool(np.all(gap <= atol + rtol * np.abs(np.nan_to_num(r))))
        return cls(float(gap.max()), float(rel.max()), within, int(a.size))


def combine(diffs: list[Diff]) -> Diff | None:
    """One Diff over several (e.g. every array of the weights)."""
    if not diffs:
        return None
    return Diff(
        max(d.max_abs for d in diffs),
        max(d.max_rel for d in diffs),
        all(d.within for d in diffs),
        sum(d.count for d in diffs),
    )


def diff_arrays(values: dict, reference: dict, rtol: float, atol: float) -> Diff:
    """Arrays stored under the same keys (npz contents); a missing key is a mismatch."""
    if set(values) != set(reference):
        return Diff(float("inf"), float("inf"), False, 0)
    return combine([Diff.of(values[k], reference[k], rtol, atol) for k in sorted(reference)]) or Diff(0.0, 0.0, True, 0)


def first_step_outside(values, reference, rtol: float, atol: float) -> int | None:
    """The 1-based step at which the losses first left the tolerance, or None."""
    a = np.asarray(values, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    n = min(a.size, r.size)
    bad = ~(np.abs(a[:n] - r[:n]) <= atol + rtol * np.abs(r[:n]))
    hits = np.flatnonzero(bad)
    if hits.size:
        return int(hits[0]) + 1
    return None if a.size == r.size else n + 1
