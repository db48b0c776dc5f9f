"""compare's verdicts from synthetic worker outcomes: the pure build_report, no framework, no process."""

from __future__ import annotations

import numpy as np
import pytest

from backendlab.compare.report import markdown, terminal_table
from backendlab.compare.results import CompareOptions
from backendlab.compare.verdict import QUANTITIES, LoadedRun, TrainedRun, build_report
from backendlab.runspec import RunSpec
from backendlab.workers.protocol import Outcome

LOSSES = [0.9, 0.7, 0.5, 0.4]


def _trained(backend, losses=LOSSES, *, checksum="abc", stochastic=(), shift=0.0, nonfinite=None) -> TrainedRun:
    result = {
        "info": {"framework_version": "1.0", "keras_version": "3.15.1"},
        "start_checksum": checksum,
        "train_time_s": 1.5,
        "history": {"loss": [losses[1], losses[-1]], "accuracy": [0.8, 0.9]},
        "step_losses": list(losses),
        "test": {"loss": 0.45, "accuracy": 0.9},
        "nonfinite": None
        if nonfinite is None
        else {"step": nonfinite, "quantity": "loss", "name": "loss", "value": "nan"},
        "stochastic_layers": list(stochastic),
    }
    w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    arrays = {
        "weights": {"w/0": w + shift},
        "predictions": {"out": np.full(5, 0.25, np.float32) + shift},
        "initial_predictions": {"out": np.full(5, 0.5, np.float32)},
    }
    return TrainedRun(Outcome(backend, "ok", 0, 2.0, result, "", ""), arrays)


def _failed(backend, status="crashed", message="worker killed by signal SIGKILL") -> TrainedRun:
    return TrainedRun(Outcome(backend, status, -9, 1.0, None, message, "tail"), {})


def _report(trained, opts=None, **kw):
    planned = kw.pop("planned", list(trained))
    return build_report(opts or CompareOptions(), data="breast_cancer", reference=planned[0], planned=planned,
                        trained=trained, **kw)  # fmt: skip


def test_identical_runs_agree_with_every_quantity_measured():
    report = _report({"jax": _trained("jax"), "torch": _trained("torch")})
    assert report.verdict == "agree" and report.exit_code == 0 and report.criterion.kind == "exact"
    torch = report.backends["torch"]
    assert torch.verdict == "agree" and torch.first_divergent_step is None
    assert list(torch.differences) == [q.name for q in QUANTITIES if not q.only_statistical]
    assert all(d.max_abs == 0.0 for d in torch.differences.values())
    assert report.backends["jax"].verdict == "agree" and report.backends["jax"].differences == {}


def test_a_loss_that_leaves_the_tolerance_names_its_first_step():
    drifted = [0.9, 0.7, 0.52, 0.41]  # step 3 is 0.02 off: outside 1e-3 + 1e-3 * 0.5
    report = _report({"jax": _trained("jax"), "torch": _trained("torch", drifted)})
    torch = report.backends["torch"]
    assert report.verdict == "diverge" and report.exit_code == 1
    assert torch.verdict == "diverge" and torch.first_divergent_step == 3
    assert torch.differences["step_losses"].max_abs == pytest.approx(0.02)
    assert torch.message == (
        "outside rtol=0.001, atol=0.001 in step_losses, epoch_metrics; losses left the tolerance at step 3"
    )


def test_weights_and_predictions_inside_and_outside_the_tolerance():
    inside = _report({"jax": _trained("jax"), "tf": _trained("tf", shift=5e-4)})  # <= 1e-3 + 1e-3 * |ref|
    outside = _report({"jax": _trained("jax"), "tf": _trained("tf", shift=3e-3)})
    assert inside.backends["tf"].verdict == "agree"
    assert inside.backends["tf"].differences["weights"].max_abs == pytest.approx(5e-4, rel=1e-3)
    assert outside.backends["tf"].verdict == "diverge" and outside.backends["tf"].first_divergent_step is None
    assert outside.backends["tf"].message == "outside rtol=0.001, atol=0.001 in weights, predictions"


def test_other_starting_weights_diverge_whatever_the_losses():
    report = _report({"jax": _trained("jax"), "torch": _trained("torch", checksum="zzz")})
    torch = report.backends["torch"]
    assert torch.verdict == "diverge"
    assert torch.message == "starting weights differ from jax's (checksum zzz vs abc)"


def test_stochastic_runs_decide_on_final_metrics_loosely():
    noisy = [0.9, 0.8, 0.55, 0.42]  # step losses differ, final loss within 10%
    trained = {
        "jax": _trained("jax", stochastic=["dropout"]),
        "torch": _trained("torch", noisy, stochastic=["dropout"]),
    }
    report = _report(trained)
    torch = report.backends["torch"]
    assert report.criterion.kind == "statistical" and report.stochastic_layers == ["dropout"]
    assert not torch.differences["step_losses"].within
    assert torch.differences["final_metrics_statistical"].within and torch.verdict == "agree"
    assert torch.first_divergent_step == 2  # for information: it does not decide here
    assert "draw from each backend's own random generator" in report.notes[0]
    exact = _report(trained, CompareOptions(run=RunSpec(disable_stochastic=True)))
    assert exact.criterion.kind == "exact" and exact.backends["torch"].verdict == "diverge"
    assert "switched off" in exact.notes[0]


def test_failures_make_the_run_failed_and_keep_the_rest():
    report = _report({"jax": _trained("jax"), "tf": _failed("tf"), "torch": _trained("torch")})
    assert report.verdict == "failed" and report.exit_code == 1
    assert report.backends["tf"].status == "crashed" and report.backends["tf"].message.endswith("SIGKILL")
    assert report.backends["torch"].verdict == "agree"


def test_a_backend_that_never_ran_is_not_run_and_an_interrupt_is_incomplete():
    report = _report({"jax": _trained("jax")}, planned=["jax", "torch"], interrupted=True)
    assert report.backends["torch"].status == "not run"
    assert report.verdict == "incomplete"


def test_a_failed_reference_leaves_the_others_uncompared():
    report = _report({"jax": _failed("jax"), "torch": _trained("torch")})
    torch = report.backends["torch"]
    assert torch.verdict is None and torch.differences == {}
    assert torch.message == "not compared: the reference jax has no usable result (crashed)"


def test_nonfinite_training_is_reported_with_its_step():
    losses = [0.9, float("nan"), float("nan"), float("nan")]
    report = _report({"jax": _trained("jax"), "tf": _trained("tf", losses, nonfinite=2)})
    tf = report.backends["tf"]
    assert tf.status == "nonfinite" and tf.nonfinite_step == 2 and tf.verdict == "diverge"
    assert tf.message == "training loss became nan at step 2"
    assert report.verdict == "failed"


def test_portability_cells_and_the_numpy_reference():
    trained = {"jax": _trained("jax"), "torch": _trained("torch")}
    same = {"out": np.full(5, 0.25, np.float32)}
    off = {"out": np.full(5, 0.35, np.float32)}
    ok = Outcome("x", "ok", 0, 1.0, {"errors": {}}, "", "")
    loaded = {
        "jax": LoadedRun(ok, {"jax": same, "torch": same}),
        "torch": LoadedRun(ok, {"jax": off, "torch": same}),
        "numpy": LoadedRun(ok, {"jax": same, "torch": same, "initial": {"out": np.full(5, 0.5, np.float32)}}),
    }
    report = _report(trained, loaded=loaded)
    assert report.portability["jax"]["torch"]["status"] == "diverge"
    assert report.portability["jax"]["torch"]["max_abs"] == pytest.approx(0.1)
    assert report.portability["torch"]["jax"]["status"] == "agree"
    assert report.numpy_reference == {
        b: {"status": "agree", "max_abs": 0.0, "max_rel": 0.0, "within": True, "count": 5} for b in trained
    }
    assert report.verdict == "diverge"  # a model that does not load the same is a divergence


def test_a_model_that_does_not_load_is_a_failed_cell_with_its_error():
    trained = {"jax": _trained("jax"), "torch": _trained("torch")}
    result = {"errors": {"torch": "ModuleNotFoundError: No module named 'x'"}}
    loaded = {
        "jax": LoadedRun(Outcome("jax", "ok", 0, 1.0, result, "", ""), {"jax": trained["jax"].arrays["predictions"]})
    }
    report = _report(trained, loaded=loaded)
    assert report.portability["torch"]["jax"] == {
        "status": "failed",
        "message": "ModuleNotFoundError: No module named 'x'",
    }
    assert report.verdict == "diverge"


def test_the_report_views_show_the_registry_quantities():
    report = _report({"jax": _trained("jax"), "torch": _trained("torch", [0.9, 0.7, 0.52, 0.41])})
    md = markdown(report)
    assert md.startswith("# backendlab compare: DIVERGE")
    header = next(line for line in md.splitlines() if line.startswith("| backend | status"))
    for q in QUANTITIES:
        assert (f"{q.name} (abs / rel)" in header) == q.markdown
    columns = [c.header for c in terminal_table(report).columns]
    assert columns[5:] == [q.name.replace("_", " ") for q in QUANTITIES if q.table]
