"""compare's verdicts from synthetic worker outcomes: the pure build_report, no framework, no process."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from backendlab.compare.report import divergence_lines, markdown, odd_line, terminal_table
from backendlab.compare.results import CompareOptions, CompareReport
from backendlab.compare.verdict import QUANTITIES, LoadedRun, TrainedRun, build_report, evaluation_stage, odd_one_out
from backendlab.runspec import RunSpec
from backendlab.workers.protocol import Outcome

LOSSES = [0.9, 0.7, 0.5, 0.4]


def _trained(
    backend, losses=LOSSES, *, checksum="abc", stochastic=(), shift=0.0, nonfinite=None, test=None, start=0.5,
    predicted=0.0, outside=(),
) -> TrainedRun:  # fmt: skip
    """A training worker's outcome; ``shift`` moves the weights and predictions, ``predicted`` the predictions
    alone, ``start`` the starting predictions; ``test``: evaluate's metrics."""
    result = {
        "info": {"framework_version": "1.0", "keras_version": "3.15.1"},
        "start_checksum": checksum,
        "train_time_s": 1.5,
        "history": {"loss": [losses[1], losses[-1]], "accuracy": [0.8, 0.9]},
        "step_losses": list(losses),
        "test": test or {"loss": 0.45, "accuracy": 0.9},
        "nonfinite": None
        if nonfinite is None
        else {"step": nonfinite, "quantity": "loss", "name": "loss", "value": "nan"},
        "stochastic_layers": list(stochastic),
        "stochastic_outside": list(outside),
    }
    w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    arrays = {
        "weights": {"w/0": w + shift},
        "predictions": {"out": np.full(5, 0.25, np.float32) + shift + predicted},
        "initial_predictions": {"out": np.full(5, start, np.float32)},
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


NOISY = [0.9, 0.8, 0.55, 0.42]  # step losses differ, final loss within 10%


def test_with_backend_randomness_stochastic_runs_decide_on_final_metrics_loosely():
    trained = {
        "jax": _trained("jax", stochastic=["dropout"]),
        "torch": _trained("torch", NOISY, stochastic=["dropout"]),
    }
    report = _report(trained, CompareOptions(run=RunSpec(random="backend")))
    torch = report.backends["torch"]
    assert report.criterion.kind == "statistical" and report.stochastic_layers == ["dropout"]
    assert report.random == "backend" and report.stochastic_marks == {"dropout": "backend"}
    assert not torch.differences["step_losses"].within
    assert torch.differences["final_metrics_statistical"].within and torch.verdict == "agree"
    assert torch.first_divergent_step == 2  # for information: it does not decide here
    assert report.notes[0].startswith(
        "stochastic layers (dropout) draw from each backend's own random generator (--random backend), "
        "so training cannot match step by step"
    )
    assert report.notes[0].endswith("Run with --random portable or --disable-stochastic for an exact comparison.")
    exact = _report(trained, CompareOptions(run=RunSpec(random="backend", disable_stochastic=True)))
    assert exact.criterion.kind == "exact" and exact.backends["torch"].verdict == "diverge"
    assert exact.stochastic_marks == {"dropout": "off"}
    assert "switched off" in exact.notes[0]


def test_with_portable_randomness_a_stochastic_run_is_held_to_the_exact_tolerance():
    same = {b: _trained(b, stochastic=["dropout", "noise"]) for b in ("jax", "torch")}
    report = _report(same)  # --random portable is the default
    assert report.criterion.kind == "exact" and report.verdict == "agree"
    assert report.random == "portable" and report.stochastic_marks == {"dropout": "portable", "noise": "portable"}
    assert report.notes[0] == (
        "stochastic layers (dropout, noise) draw portably (--random portable): one generator, keyed by each "
        "layer's seed state, gives every backend the same random numbers, so the comparison is exact."
    )
    assert "Stochastic layers (--random portable): `dropout` portable, `noise` portable." in markdown(report)
    # Final metrics within 10% no longer pass: the step losses decide, exactly.
    noisy = {"jax": same["jax"], "torch": _trained("torch", NOISY, stochastic=["dropout", "noise"])}
    torch = _report(noisy).backends["torch"]
    assert torch.verdict == "diverge" and "final_metrics_statistical" not in torch.differences
    assert torch.message.startswith("outside rtol=") and "step_losses" in torch.message


def test_a_layer_drawing_outside_keras_alone_keeps_the_statistical_verdict_and_is_named():
    trained = {
        "jax": _trained("jax", stochastic=["dropout", "own_noise"], outside=["own_noise"]),
        "torch": _trained("torch", NOISY, stochastic=["dropout", "own_noise"], outside=["own_noise"]),
    }
    report = _report(trained)
    assert report.criterion.kind == "statistical" and report.backends["torch"].verdict == "agree"
    assert report.stochastic_marks == {"dropout": "portable", "own_noise": "outside Keras"}
    note = report.notes[0]
    assert note.startswith(
        "own_noise draws from the framework's own random generator, outside Keras's random ops, where --random "
        "portable cannot reach, so training cannot match step by step"
    )
    assert "The other stochastic layers (dropout) draw portably." in note
    assert note.endswith("draw through keras.random with a SeedGenerator, or run with --disable-stochastic.")
    assert "`dropout` portable, `own_noise` outside Keras (statistical)." in markdown(report)
    # One backend seeing it is enough: it draws other numbers there.
    trained["jax"] = _trained("jax", stochastic=["dropout", "own_noise"])
    assert _report(trained).stochastic_marks["own_noise"] == "outside Keras"


def test_the_marks_survive_report_json_and_an_older_report_reads_as_backend_randomness():
    report = _report({b: _trained(b, stochastic=["dropout"]) for b in ("jax", "torch")})
    written = json.loads(json.dumps(dataclasses.asdict(report)))
    assert CompareReport.from_dict(written).stochastic_marks == {"dropout": "portable"}
    for key in ("random", "stochastic_marks"):
        del written[key]
    older = CompareReport.from_dict(written)
    assert older.random == "backend" and older.stochastic_marks == {}
    assert "Stochastic layers" not in markdown(older)


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


def test_a_failed_reference_hands_the_yardstick_to_the_first_backend_that_trained():
    report = _report({"jax": _failed("jax"), "tf": _trained("tf"), "torch": _trained("torch", [0.9, 0.5, 0.3, 0.2])})
    assert report.reference == "tf" and report.verdict == "failed" and report.exit_code == 1
    assert report.backends["tf"].verdict == "agree" and report.backends["torch"].verdict == "diverge"
    assert report.backends["torch"].differences["step_losses"].max_abs > 0
    assert "the reference jax has no usable result (crashed); the other backends are measured against tf instead" in (
        report.notes
    )


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
    # A saved model that predicts otherwise elsewhere is the saved models' verdict, not training's.
    assert (report.verdict, report.portability_verdict, report.exit_code) == ("agree", "diverge", 1)


def test_a_model_that_loads_but_does_not_predict_is_a_failed_cell_with_its_error():
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
    assert (report.verdict, report.portability_verdict, report.exit_code) == ("agree", "failed", 1)


KERAS_CANNOT_LOCATE = (
    "TypeError: Could not locate function 'focal_loss'. Make sure custom classes and functions are decorated "
    "with `@keras.saving.register_keras_serializable()`. If they are already decorated, make sure they are all "
    "imported so that the decorator is run before trying to load them."
)


@pytest.fixture
def unloadable():
    """Training agreed on jax and torch; no backend could load either's .keras file (Keras's own reason)."""
    trained = {"jax": _trained("jax"), "torch": _trained("torch")}
    result = {"errors": {}, "unloadable": {"jax": KERAS_CANNOT_LOCATE, "torch": KERAS_CANNOT_LOCATE}}
    loaded = {b: LoadedRun(Outcome(b, "ok", 0, 1.0, result, "", ""), {}) for b in ("jax", "torch", "numpy")}
    return _report(trained, loaded=loaded)


def test_a_model_that_cannot_load_leaves_trainings_verdict_alone(unloadable):
    assert unloadable.portability["jax"]["torch"] == {"status": "could not load", "message": KERAS_CANNOT_LOCATE}
    assert unloadable.verdict == "agree" and unloadable.backends["torch"].verdict == "agree"
    assert unloadable.portability_verdict == "could not load"
    assert unloadable.exit_code == 1  # everything compare checked must agree for 0


def test_the_reason_a_model_cannot_load_is_given_once(unloadable):
    from backendlab.compare.report import portability_line, portability_lines

    lines = portability_lines(unloadable)
    assert lines == [
        "| saved on \\ loaded on | jax | torch | numpy |",
        "|---|---|---|---|",
        "| jax | could not load [1] | could not load [1] | could not load [1] |",
        "| torch | could not load [1] | could not load [1] | could not load [1] |",
        "",
        f"[1] {KERAS_CANNOT_LOCATE}",
    ]
    assert portability_line(unloadable) == (
        "portability: COULD NOT LOAD (each backend's .keras file loaded on each backend: 4 of 4 could not load [1])"
    )
    md = markdown(unloadable)
    assert md.count("Could not locate function") == 1
    assert md.startswith("# backendlab compare: AGREE")
    assert "Portability: COULD NOT LOAD (" in md and f"- [1] {KERAS_CANNOT_LOCATE}" in md


def test_every_saved_model_loading_the_same_is_its_own_agree_line():
    from backendlab.compare.report import portability_line

    trained = {"jax": _trained("jax"), "torch": _trained("torch")}
    ok = Outcome("x", "ok", 0, 1.0, {"errors": {}}, "", "")
    same = trained["jax"].arrays["predictions"]
    report = _report(trained, loaded={b: LoadedRun(ok, {"jax": same, "torch": same}) for b in ("jax", "torch")})
    assert (report.verdict, report.portability_verdict, report.exit_code) == ("agree", "agree", 0)
    assert portability_line(report) == (
        "portability: AGREE (each backend's .keras file loaded on each backend: 4 of 4 agree)"
    )
    assert _report(trained).portability_verdict is None  # --no-portability: nothing loaded, no line


def test_an_export_made_on_another_backend_says_which_and_why():
    from backendlab.compare.report import export_line, portability_lines

    trained = {"jax": _trained("jax"), "torch": _trained("torch")}
    own = "tf_saved_model export on torch needs torch_xla, which backendlab's extras do not install: ..."
    trained["torch"].outcome.result["exports"] = {"tf_saved_model": {"status": "failed", "message": own}}
    trained["jax"].outcome.result["exports"] = {
        "tf_saved_model": {"status": "agree", "message": "", "max_abs": 1e-7, "within": True}
    }
    routed = {"status": "agree", "message": "predicts as torch's", "max_abs": 1.2e-7, "within": True}
    rerouted = {"torch": {"tf_saved_model": {**routed, "route": "tensorflow", "own_failure": own}}}
    report = _report(trained, rerouted=rerouted)
    assert report.export_verdict == "agree" and report.exit_code == 0
    assert report.portability["torch"]["tf_saved_model"]["route"] == "tensorflow"
    assert portability_lines(report)[-3:] == [
        "| torch | agree (1.20e-07) via tensorflow [1] |",
        "",
        f"[1] {own}",
    ]
    assert export_line(report) == "exports: AGREE; torch as tf_saved_model: agree (1.20e-07) via tensorflow [1]"
    failed = {"torch": {"tf_saved_model": {"status": "failed", "message": own, "tried": {"tensorflow": "no"}}}}
    report = _report(trained, rerouted=failed)
    assert (report.verdict, report.export_verdict, report.exit_code) == ("agree", "failed", 1)
    assert portability_lines(report)[-4:] == [
        "| torch | failed [1]; tried tensorflow [2] |",
        "",
        f"[1] {own}",
        "[2] no",
    ]


def test_the_report_views_show_the_registry_quantities():
    report = _report({"jax": _trained("jax"), "torch": _trained("torch", [0.9, 0.7, 0.52, 0.41])})
    md = markdown(report)
    assert md.startswith("# backendlab compare: DIVERGE")
    header = next(line for line in md.splitlines() if line.startswith("| backend | status"))
    for q in QUANTITIES:
        assert (f"{q.name} (abs / rel)" in header) == q.markdown
    columns = [c.header for c in terminal_table(report).columns]
    assert columns[5:] == [q.name.replace("_", " ") for q in QUANTITIES if q.table]


# --- the odd one out, and a difference in evaluation alone ------------------------------------------------------


def _numpy_run(start: float) -> dict[str, LoadedRun]:
    """Keras's numpy backend predicting ``start`` from the shared starting weights (and nothing else loaded)."""
    ok = Outcome("numpy", "ok", 0, 1.0, {"errors": {}}, "", "")
    return {"numpy": LoadedRun(ok, {"initial": {"out": np.full(5, start, np.float32)}})}


def test_the_reference_alone_differing_is_the_odd_one_out_and_the_others_are_measured_against_one_of_them():
    trained = {"jax": _trained("jax", shift=3e-3), "tensorflow": _trained("tensorflow"), "torch": _trained("torch")}
    report = _report(trained)
    message = (
        "jax is the odd one out: tensorflow and torch agree with each other, and jax differs from both; "
        "the differences are measured against tensorflow, not jax"
    )
    assert report.odd_one_out == {
        "backend": "jax",
        "agreeing": ["tensorflow", "torch"],
        "by": "majority",
        "message": message,
    }
    assert report.reference == "tensorflow"
    jax, tf, torch = (report.backends[n] for n in ("jax", "tensorflow", "torch"))
    assert jax.verdict == "diverge" and jax.message == "outside rtol=0.001, atol=0.001 in weights, predictions"
    assert jax.differences["weights"].max_abs == pytest.approx(3e-3, rel=1e-3)
    assert tf.verdict == "agree" and tf.differences == {} and tf.message == ""
    assert torch.verdict == "agree" and torch.differences["weights"].max_abs == 0.0
    assert report.verdict == "diverge" and report.exit_code == 1  # the backends do differ
    assert odd_line(report) == message
    md = markdown(report)
    assert f"**{message}.**" in md and "Reference backend: tensorflow." in md
    assert "reference tensorflow" in terminal_table(report).title


def test_another_backend_alone_differing_is_named_and_the_reference_stays():
    trained = {"jax": _trained("jax"), "tensorflow": _trained("tensorflow"), "torch": _trained("torch", shift=3e-3)}
    report = _report(trained)
    assert report.reference == "jax" and report.backends["torch"].verdict == "diverge"
    assert report.odd_one_out["message"] == (
        "torch is the odd one out: jax and tensorflow agree with each other, and torch differs from both"
    )


def test_keras_numpy_backend_breaks_the_tie_between_two_backends_by_their_starting_predictions():
    trained = {"jax": _trained("jax", shift=3e-3, start=0.6), "torch": _trained("torch")}
    report = _report(trained, loaded=_numpy_run(0.5))
    assert report.odd_one_out["backend"] == "jax" and report.odd_one_out["by"] == "numpy"
    assert report.odd_one_out["message"] == (
        "jax is the odd one out: it differs from torch, and its starting predictions differ from those of Keras's "
        "numpy backend, an independent reference, where torch's agree with them; the differences are measured "
        "against torch, not jax"
    )
    assert report.reference == "torch" and report.backends["jax"].verdict == "diverge"
    assert report.backends["torch"].verdict == "agree"
    theirs = _report(trained, loaded=_numpy_run(0.6))  # numpy sides with jax: torch is the odd one
    assert theirs.odd_one_out["backend"] == "torch" and theirs.reference == "jax"
    assert _report(trained).odd_one_out == {}  # two backends, no numpy: nobody can say which


def test_no_odd_one_out_where_numpy_sides_with_the_lone_backend_or_every_backend_differs():
    trained = {
        "jax": _trained("jax", shift=3e-3),
        "tensorflow": _trained("tensorflow", start=0.6),
        "torch": _trained("torch", start=0.6),
    }
    report = _report(trained, loaded=_numpy_run(0.5))
    assert report.odd_one_out == {} and report.reference == "jax"
    assert report.backends["tensorflow"].verdict == report.backends["torch"].verdict == "diverge"
    apart = {n: _trained(n, shift=s) for n, s in (("jax", 0.0), ("tensorflow", 3e-3), ("torch", 6e-3))}
    assert _report(apart).odd_one_out == {}


@pytest.mark.parametrize(
    "names,agreeing,numpy,expected",
    [
        ("abc", {"bc"}, {}, ("a", ["b", "c"], "majority")),
        ("abcd", {"bc", "bd", "cd"}, {}, ("a", ["b", "c", "d"], "majority")),
        ("abc", {"bc"}, {"a": "agree", "b": "diverge", "c": "diverge"}, None),  # numpy against the majority
        ("abc", {"bc"}, {"a": "diverge", "b": "diverge", "c": "diverge"}, ("a", ["b", "c"], "majority")),
        ("ab", set(), {"a": "diverge", "b": "agree"}, ("a", ["b"], "numpy")),
        ("ab", set(), {"a": "agree", "b": "agree"}, None),  # a difference in training alone: no tie-breaker
        ("abc", set(), {"a": "diverge", "b": "agree", "c": "agree"}, ("a", ["b", "c"], "numpy")),
        ("abc", set(), {"a": "diverge", "b": "diverge", "c": "agree"}, None),  # two alone: neither is named
        ("abc", {"ab", "bc", "ac"}, {}, None),
    ],
)
def test_odd_one_out_is_the_one_backend_alone(names, agreeing, numpy, expected):
    found = odd_one_out(list(names), lambda a, b: a + b in agreeing or b + a in agreeing, numpy)
    if expected is None:
        assert found == {}
    else:
        assert (found["backend"], found["agreeing"], found["by"]) == expected
        assert found["message"].startswith(f"{expected[0]} is the odd one out: ")


def test_a_difference_in_evaluation_alone_says_training_agrees():
    trained = {"jax": _trained("jax"), "torch": _trained("torch", test={"loss": 9.453, "accuracy": 0.9})}
    torch = _report(trained).backends["torch"]
    assert torch.verdict == "diverge" and evaluation_stage(torch) == "evaluate"
    assert torch.message == (
        "training agrees; evaluation differs in the loss on torch (test loss 9.453 against 0.45 on jax)"
    )
    off = _trained("torch", predicted=3e-3, test={"loss": 9.453, "accuracy": 0.5})
    both = _report({"jax": _trained("jax"), "torch": off})
    assert evaluation_stage(both.backends["torch"]) == "evaluate"
    assert both.backends["torch"].message == (
        "training agrees; evaluation differs in the loss and accuracy on torch (test loss 9.453 against 0.45, "
        "test accuracy 0.5 against 0.9 on jax); predict differs on torch (predictions up to 3.00e-03 from jax's)"
    )


def test_a_difference_in_predictions_alone_is_predicts_and_one_in_training_is_trainings():
    alone = _report({"jax": _trained("jax"), "torch": _trained("torch", predicted=3e-3)}).backends["torch"]
    assert evaluation_stage(alone) == "predict"
    assert alone.message == "training agrees; predict differs on torch (predictions up to 3.00e-03 from jax's)"
    trained = _trained("torch", [0.9, 0.7, 0.52, 0.41], test={"loss": 9.0, "accuracy": 0.9})
    training = _report({"jax": _trained("jax"), "torch": trained}).backends["torch"]
    assert evaluation_stage(training) is None and training.message.startswith("outside rtol=0.001")


def test_an_evaluation_located_is_reported_as_evaluation_not_as_a_step():
    divergence = {
        "step": None,
        "phase": "loss",
        "layer": None,
        "layer_class": None,
        "variable": None,
        "abs": 9.0,
        "rel": 20.0,
        "upstream_max_rel": 0.0,
        "explanation": "the total loss (binary_crossentropy) differs by 9.0e+00 (relative 2.0e+01) while the "
        "forward pass agrees exactly",
        "during": "evaluate",
    }
    trained = {"jax": _trained("jax"), "torch": _trained("torch", test={"loss": 9.453, "accuracy": 0.9})}
    report = _report(trained, located={"torch": (divergence, [], {})})
    line = f"torch: evaluation of the test set first differs in loss: {divergence['explanation']}"
    assert divergence_lines(report) == [line]
    md = markdown(report)
    assert "both load jax's trained weights and evaluate the test set" in md
    assert f"**torch**: {line.removeprefix('torch: ')}" in md


def test_no_odd_one_out_is_named_where_the_backends_were_fed_other_batches():
    trained = {"jax": _trained("jax", shift=3e-3), "tensorflow": _trained("tensorflow"), "torch": _trained("torch")}
    for name, checksums in (("jax", ["a", "b"]), ("tensorflow", ["a", "b"]), ("torch", ["a", "c"])):
        trained[name].outcome.result["batch_checksums"] = checksums
    report = _report(trained)
    assert report.verdict == "nondeterministic" and report.odd_one_out == {} and report.reference == "jax"
