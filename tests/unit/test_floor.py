"""The noise floor (compare.floor) and the verdicts it gives, from synthetic runs: no framework, no process."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from backendlab.compare import floor
from backendlab.compare.report import floor_lines, loss_curves_png, markdown, timing_line
from backendlab.compare.results import AGREE_ROUNDING, CompareOptions, CompareReport
from backendlab.compare.verdict import TrainedRun, build_report
from backendlab.workers.protocol import Outcome

LOSSES = [0.9, 0.7, 0.5, 0.4, 0.35, 0.3]


def test_perturb_moves_every_float_by_one_ulp_seeded_and_leaves_the_rest():
    w = np.random.default_rng(0).normal(size=(50, 40)).astype(np.float32)
    ints = np.arange(5, dtype=np.int64)
    a, kept = floor.perturb([w, ints], seed=1)
    assert a.dtype == np.float32 and a.shape == w.shape
    # Exactly one representable float away, in either direction:
    assert np.all(np.nextafter(w, np.where(a > w, np.inf, -np.inf).astype(np.float32)) == a)
    assert 0.45 < np.mean(a > w) < 0.55
    assert np.array_equal(kept, ints)
    assert np.array_equal(floor.perturb([w], seed=1)[0], a)  # the twins of one seed share a start on every backend
    assert not np.array_equal(floor.perturb([w], seed=2)[0], a)


def test_step_spread_is_the_farthest_twin_and_windowed_the_largest_nearby():
    base = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    twins = [[1.0, 1.1, 1.0, 1.0, 1.0, 1.0], [1.2, 1.0, 1.0, 1.0, 1.0, 0.7]]
    spread = floor.step_spread(twins, base)
    assert spread == pytest.approx([0.2, 0.1, 0.0, 0.0, 0.0, 0.3])
    assert floor.windowed(spread, 1) == pytest.approx([0.2, 0.2, 0.1, 0.0, 0.3, 0.3])
    assert np.isnan(floor.step_spread([[1.0, float("nan")]], [1.0, 1.0])[1])


def test_judge_allows_factor_times_the_floor_and_no_more():
    tol = [1e-6] * 6
    spreads = [np.full(6, 1e-4), np.full(6, 2e-4)]
    inside = floor.judge([1e-3, 1.9e-3, 0, 0, 0, 0], tol, spreads, {}, twins=2, factor=10)
    assert inside.within and inside.worst_step == 2 and inside.worst_ratio == pytest.approx(9.5)
    assert inside.step_floor == pytest.approx([2e-4] * 6)
    outside = floor.judge([0, 0, 2.1e-3, 0, 0, 0], tol, spreads, {}, twins=2, factor=10)
    assert not outside.within and outside.worst_step == 3 and outside.worst_ratio == pytest.approx(10.5)
    # A step within the tolerance needs no floor; a quantity outside it needs one.
    zero = [np.zeros(6)]
    assert floor.judge([1e-7] * 6, tol, zero, {}, twins=2).within
    assert not floor.judge([1e-7] * 6, tol, zero, {"weights": (1e-3, False, 0.0)}, twins=2).within
    assert floor.judge([1e-7] * 6, tol, zero, {"weights": (1e-3, False, 2e-4)}, twins=2).within
    # A NaN anywhere is not rounding.
    assert not floor.judge([1e-3, float("nan"), 0, 0, 0, 0], tol, spreads, {}, twins=2).within


def test_amplification_and_the_backend_that_amplifies_far_more_is_named():
    assert floor.amplification(1.4e-2) == pytest.approx(1.4e-2 / 1.1920929e-7)
    assert floor.amplification(float("inf")) is None
    note = floor.outlier_note({"jax": floor.amplification(3.6e-7), "tensorflow": floor.amplification(1.4e-2)})
    assert note.startswith("tensorflow amplifies rounding 3.9×10⁴ times more than jax on this model")
    assert floor.outlier_note({"jax": 3.0, "torch": 200.0}) is None  # 67 times: not named


# --- the verdicts, through build_report -------------------------------------------------


def _run(backend, losses, shift=0.0, start_shift=0.0) -> TrainedRun:
    result = {
        "info": {"framework_version": "1.0", "keras_version": "3.15.1"},
        "start_checksum": "abc",
        "train_time_s": 1.0,
        "history": {"loss": [losses[-1]]},
        "step_losses": list(losses),
        "test": {"loss": 0.45},
        "nonfinite": None,
        "stochastic_layers": [],
    }
    w = np.linspace(-1, 1, 12, dtype=np.float64).reshape(3, 4)
    arrays = {
        "weights": {"w/0": w + shift},
        "predictions": {"out": np.full(5, 0.25) + shift},
        "initial_predictions": {"out": np.full(5, 0.5) + start_shift},
    }
    return TrainedRun(Outcome(backend, "ok", 0, 2.0, result, "", ""), arrays)


def _shifted(delta, at=None) -> list[float]:
    return [v + (delta if at in (None, i + 1) else 0.0) for i, v in enumerate(LOSSES)]


def _twins(backend, losses, shift, gap) -> list[TrainedRun]:
    """Two twins ``gap`` from their backend's run in losses, weights and predictions, 1e-7 at the start."""
    return [_run(backend, [v + s * gap for v in losses], shift + s * gap, s * 1e-7) for s in (1, -1)]


def _with_twins(torch_losses, torch_shift, gap, timing=None) -> CompareReport:
    trained = {"jax": _run("jax", LOSSES), "torch": _run("torch", torch_losses, torch_shift)}
    twins = {"jax": _twins("jax", LOSSES, 0.0, gap), "torch": _twins("torch", torch_losses, torch_shift, gap)}
    return build_report(CompareOptions(), data="d", reference="jax", planned=["jax", "torch"], trained=trained,
                        twins=twins, timing=timing)  # fmt: skip


def test_outside_the_tolerance_but_within_the_floor_agrees_within_rounding_and_exits_0():
    report = _with_twins(_shifted(0.005), 0.005, gap=0.003)
    torch = report.backends["torch"]
    assert torch.verdict == AGREE_ROUNDING and report.verdict == AGREE_ROUNDING and report.exit_code == 0
    assert torch.message == (
        "outside rtol=0.001, atol=0.001, but within rounding: at every step and in every quantity no further from "
        "jax than 10x the noise floor (losses at most 1.7x, at step 1, epoch_metrics 1.7x, weights 1.7x, "
        "predictions 1.7x); torch and jax differ only as much as a 1-ulp change of the start does on this model"
    )
    assert torch.floor["step_floor"] == pytest.approx([0.003] * 6)
    assert torch.floor["step_difference"] == pytest.approx([0.005] * 6)
    assert torch.floor["quantities"]["weights"] == {"difference": pytest.approx(0.005), "floor": pytest.approx(0.003),
                                                   "within": True}  # fmt: skip
    # A twin's final predictions moved 3e-3 (of 0.255): that many float32 epsilons, relative to their scale.
    assert torch.amplification == pytest.approx((0.003 / 0.255) / np.finfo(np.float32).eps, rel=1e-6)


def test_one_step_beyond_the_floor_diverges_and_says_how_far():
    report = _with_twins(_shifted(0.05, at=4), 0.0, gap=0.003)
    torch = report.backends["torch"]
    assert torch.verdict == "diverge" and report.verdict == "diverge" and report.exit_code == 1
    assert torch.floor["worst_step"] == 4 and torch.floor["worst_ratio"] == pytest.approx(0.05 / 0.003)
    assert torch.message.endswith(
        "; beyond 10x the noise floor (what a 1-ulp change of the start does): step 4 at 16.7x its floor"
    )


def test_no_twins_no_floor():
    trained = {"jax": _run("jax", LOSSES), "torch": _run("torch", _shifted(0.005), 0.005)}
    report = build_report(CompareOptions(), data="d", reference="jax", planned=["jax", "torch"], trained=trained)
    assert report.verdict == "diverge" and report.backends["torch"].floor is None
    assert report.backends["torch"].amplification is None and floor_lines(report) == []


def test_report_views_give_the_floor_the_difference_per_step_and_the_twins_cost():
    timing = {"wall_s": 30.0, "import_s": {"jax": 5.0}, "imports_wall_s": 5.0, "train_s": {"jax": 1.0, "torch": 1.0},
              "twins_s": {"jax": 2.0, "torch": 2.5}, "overhead_s": 18.5}  # fmt: skip
    report = _with_twins(_shifted(0.005), 0.005, gap=0.003, timing=timing)
    md = markdown(report)
    assert md.startswith("# backendlab compare: AGREE WITHIN ROUNDING")
    assert "## The noise floor" in md and "| weights | 5.00e-03 | 3.00e-03 | yes |" in md
    assert "| 6 | 5.00e-03 | 3.00e-03 | 1.67 |" in md
    assert "the noise floor's twins 4.5s (jax 2.0s, torch 2.5s)" in timing_line(report)
    assert floor_lines(report)[1] == (
        "torch: its losses are at most 1.67x the noise floor from the reference (step 1; 2 perturbed twins per "
        "backend); within rounding up to 10x: yes"
    )
    assert loss_curves_png(report)[:4] == b"\x89PNG"
    again = CompareReport.from_dict(json.loads(json.dumps(dataclasses.asdict(report))))
    assert again.backends["torch"].floor == report.backends["torch"].floor and again.exit_code == 0


def test_losses_within_the_tolerance_and_weights_outside_say_so():
    # The losses stay within 1e-3 + 1e-3 * |ref|; the weights are 0.005 off, their floor 0.003.
    report = _with_twins(LOSSES, 0.005, gap=0.003)
    torch = report.backends["torch"]
    assert torch.verdict == AGREE_ROUNDING and torch.floor["worst_ratio"] == 0.0
    assert "than 10x the noise floor (weights 1.7x, predictions 1.7x); torch and jax" in torch.message
    assert floor_lines(report)[1].startswith("torch: its losses stay within the tolerance (no floor needed; 2 ")
