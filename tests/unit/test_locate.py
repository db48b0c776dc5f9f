"""Where and why a backend's step differs: ``compare.locate`` on probe arrays built by hand.

tests/cross/test_locate.py does the same on real probes of every backend.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backendlab.compare.locate import (
    DEFAULT_THRESHOLD,
    EVALUATE_PHASES,
    Divergence,
    evaluation_window,
    locate,
    phases_table,
)

RNG = np.random.default_rng(0)

KEYS = {
    "forward": ["forward/hidden#0/0", "forward/skew#0/0", "forward/head#0/0"],
    "loss": ["loss/total"],
    "gradient": ["gradient/head/bias", "gradient/head/kernel", "gradient/hidden/bias", "gradient/hidden/kernel"],
    "update": ["update/model/hidden/kernel", "update/model/head/kernel", "update/optimizer/sgd/hidden_kernel_momentum"],
    "state": ["state/norm/moving_mean"],
}

LAYERS = {"hidden": "Dense", "skew": "Skew", "head": "Dense", "norm": "BatchNormalization"}


def _place(key: str) -> dict:
    phase, rest = key.split("/", 1)
    name = rest.split("#")[0] if phase == "forward" else rest.removeprefix("model/").split("/")[0]
    name = "hidden" if "hidden" in rest else name
    variable = None if phase in ("forward", "loss") else rest.removeprefix("model/").removeprefix("optimizer/")
    return {"key": key, "phase": phase, "layer": name, "layer_class": LAYERS.get(name), "variable": variable}


def made_up_probe() -> tuple[dict, dict]:
    arrays = {key: RNG.normal(size=(4, 3)).astype("float32") for keys in KEYS.values() for key in keys}
    arrays["loss/total"] = np.float32(0.7)
    return arrays, {"places": [_place(k) for keys in KEYS.values() for k in keys]}


def with_noise(arrays: dict, rel: float = 2e-7) -> dict:
    """Another backend's probe of the same step: float32 rounding everywhere."""
    return {k: (a * (1 + rel * RNG.standard_normal(np.shape(a)))).astype("float32") for k, a in arrays.items()}


def test_rounding_spread_over_every_phase_names_no_culprit():
    ref, manifest = made_up_probe()
    found = locate(ref, manifest, with_noise(ref), manifest, step=4)
    assert found.phase is None and found.layer is None and found.variable is None
    assert found.rel < DEFAULT_THRESHOLD
    assert "float32 rounding" in found.explanation


def test_a_layer_that_computes_something_else_is_named_not_the_layers_after_it():
    ref, manifest = made_up_probe()
    mine = with_noise(ref)
    for key in ("forward/skew#0/0", "forward/head#0/0", "loss/total", *KEYS["gradient"], *KEYS["update"]):
        mine[key] = mine[key] * np.float32(1.01)  # it, and everything downstream of it
    found = locate(ref, manifest, mine, manifest, step=1)
    assert (found.phase, found.layer, found.layer_class) == ("forward", "skew", "Skew")
    assert found.rel == pytest.approx(0.01, rel=1e-3)
    assert found.upstream_max_rel < 1e-6
    assert found.explanation.startswith("the output of layer skew (Skew) differs by")
    assert "the layers before it agree to" in found.explanation


def test_an_update_that_differs_while_all_before_it_agrees():
    ref, manifest = made_up_probe()
    mine = with_noise(ref)
    mine["update/model/hidden/kernel"] = ref["update/model/hidden/kernel"] + np.float32(5e-3)
    found = locate(ref, manifest, mine, manifest, step=2)
    assert (found.phase, found.variable, found.layer) == ("update", "hidden/kernel", "hidden")
    assert found.abs == pytest.approx(5e-3, rel=1e-3)
    assert found.step == 2
    assert "the update of hidden/kernel differs by 5.0e-03" in found.explanation
    assert "while the forward pass, loss and gradients agree to" in found.explanation


def test_gradients_are_walked_from_the_output_back():
    """A gradient cut in ``hidden`` halves its own and nothing after it: hidden/bias comes first in the manifest."""
    ref, manifest = made_up_probe()
    mine = with_noise(ref)
    for key in ("gradient/hidden/bias", "gradient/hidden/kernel", *KEYS["update"][:1]):
        mine[key] = ref[key] * np.float32(0.5)
    found = locate(ref, manifest, mine, manifest, step=1)
    assert (found.phase, found.variable) == ("gradient", "hidden/bias")
    assert found.rel == pytest.approx(0.5, rel=1e-3)


def test_a_state_change_that_differs_is_found_after_everything_else_agrees():
    ref, manifest = made_up_probe()
    mine = with_noise(ref)
    mine["state/norm/moving_mean"] = ref["state/norm/moving_mean"] * np.float32(10.0)
    found = locate(ref, manifest, mine, manifest, step=1)
    assert (found.phase, found.layer, found.layer_class) == ("state", "norm", "BatchNormalization")
    assert found.rel == pytest.approx(9.0, rel=1e-3)


def test_rounding_that_grows_gradually_is_not_blamed_on_where_it_surfaced():
    ref, manifest = made_up_probe()
    mine = with_noise(ref)
    for key, rel in (("forward/hidden#0/0", 4e-6), ("forward/skew#0/0", 2e-5), ("forward/head#0/0", 6e-5)):
        mine[key] = ref[key] * np.float32(1 + rel)
    found = locate(ref, manifest, mine, manifest, step=1)
    assert found.phase is None
    assert "no single place stands out" in found.explanation


def test_a_near_zero_array_is_measured_against_its_phase_not_itself():
    ref, manifest = made_up_probe()
    ref["gradient/head/bias"] = np.zeros((4, 3), "float32")  # exactly zero on the reference
    mine = with_noise(ref)
    mine["gradient/head/bias"] = np.full((4, 3), 1e-10, "float32")  # rounding elsewhere
    assert locate(ref, manifest, mine, manifest, step=1).phase is None


def test_an_update_is_measured_against_the_precision_of_the_weight_it_changes():
    """``new - old`` on a weight near 0.5 is exact only to 6e-8 (one float32 unit in the last place)."""
    ref, manifest = made_up_probe()
    key = "update/model/hidden/kernel"
    ref[key] = np.full((4, 3), 4e-3, "float32")
    mine = with_noise(ref)
    mine[key] = ref[key] + np.float32(6e-8)
    assert locate(ref, manifest, mine, manifest, step=1).phase == "update"  # against the update alone: 1.5e-5
    for place in manifest["places"]:
        if place["key"] == key:
            place["scale"] = 0.5  # the weight's magnitude, as the probe records it
    assert locate(ref, manifest, mine, manifest, step=1).phase is None
    mine[key] = ref[key] * np.float32(1.01)  # a real difference is still one
    assert locate(ref, manifest, mine, manifest, step=1).variable == "hidden/kernel"


def test_nan_on_one_side_or_a_missing_manifest_still_locates():
    ref, _ = made_up_probe()
    mine = with_noise(ref)
    mine["loss/total"] = np.float32("nan")
    found = locate(ref, None, mine, None, step=1)
    assert (found.phase, found.rel) == ("loss", float("inf"))


def test_divergence_serializes_to_exactly_the_agreed_keys():
    ref, manifest = made_up_probe()
    found = locate(ref, manifest, with_noise(ref), manifest, step=3)
    data = json.loads(json.dumps(found.to_dict()))
    assert list(data) == [
        "step",
        "phase",
        "layer",
        "layer_class",
        "variable",
        "abs",
        "rel",
        "upstream_max_rel",
        "explanation",
        "during",
    ]
    assert data["during"] == "training"
    assert Divergence.from_dict(data) == found


def test_phases_table_has_one_row_per_phase_with_its_worst_array():
    ref, _ = made_up_probe()
    mine = with_noise(ref)
    mine["update/model/head/kernel"] = ref["update/model/head/kernel"] * np.float32(1.5)
    rows = {row["phase"]: row for row in phases_table(ref, mine)}
    assert list(rows) == ["forward", "loss", "gradient", "update", "state"]
    assert rows["update"]["worst"] == "update/model/head/kernel"
    assert rows["update"]["max_rel"] == pytest.approx(0.5, rel=1e-3)
    assert rows["gradient"]["compared"] == 4 and rows["gradient"]["max_rel"] < DEFAULT_THRESHOLD


# --- evaluation: the test set from trained weights, in inference ---------------------------------------------------


def made_up_evaluation() -> tuple[dict, dict]:
    """An evaluation probe: three layers' outputs on 64 test samples, evaluate's loss and one metric."""
    forward = KEYS["forward"]
    arrays = {key: RNG.normal(size=(64, 3)).astype("float32") for key in forward}
    arrays |= {"loss/total": np.float32(7.387), "metrics/accuracy": np.float32(0.75)}
    places = [_place(k) for k in forward] + [
        {"key": "loss/total", "phase": "loss", "function": "binary_crossentropy"},
        {"key": "metrics/accuracy", "phase": "metrics", "variable": "accuracy"},
    ]
    return arrays, {"places": places}


def test_an_evaluation_whose_loss_alone_differs_names_the_loss_and_its_function():
    ref, manifest = made_up_evaluation()
    mine = with_noise(ref)
    mine["loss/total"] = np.float32(249.45)
    found = locate(ref, manifest, mine, manifest, step=None, during="evaluate")
    assert (found.phase, found.during, found.step) == ("loss", "evaluate", None)
    assert found.explanation.startswith("the total loss (binary_crossentropy) differs by 2.4e+02 (relative 3.3e+01)")
    assert " while the forward pass agrees to " in found.explanation
    rows = phases_table(ref, mine, EVALUATE_PHASES)
    assert [(r["phase"], r["compared"]) for r in rows] == [("forward", 3), ("loss", 1), ("metrics", 1)]


def test_an_evaluation_whose_metric_alone_differs_names_the_metric():
    ref, manifest = made_up_evaluation()
    mine = with_noise(ref)
    mine["metrics/accuracy"] = np.float32(0.5)
    found = locate(ref, manifest, mine, manifest, step=None, during="evaluate")
    assert (found.phase, found.variable) == ("metrics", "accuracy")
    assert found.explanation.startswith("the metric accuracy differs by 2.5e-01")
    assert "while the forward pass and the loss agree" in found.explanation
    quiet = locate(ref, manifest, with_noise(ref), manifest, step=None, during="evaluate")
    assert quiet.phase is None and quiet.during == "evaluate"
    assert quiet.explanation.endswith("is float32 rounding spread over the whole evaluation")


def test_the_evaluation_window_is_every_sample_or_whole_batches_from_the_worst():
    ref = {"out/0": np.zeros((1000, 2), "float32"), "out/1": np.zeros(1000, "float32")}
    mine = {k: v.copy() for k, v in ref.items()}
    assert evaluation_window(mine, ref, 1000, 32, 1024) == (0, 1000)
    mine["out/1"][700] = 0.5  # batch 21 (672..703) of 32
    assert evaluation_window(mine, ref, 1000, 32, 100) == (672, 768)  # three batches: 96 samples
    mine["out/0"][990, 1] = np.nan  # NaN on one side counts as the largest difference
    assert evaluation_window(mine, ref, 1000, 32, 100) == (960, 1000)
    assert evaluation_window(mine, ref, 1000, 256, 100) == (768, 1000)  # one batch at least


@pytest.mark.parametrize(
    ("manifest", "said"),
    [
        # A probe from before --random: each backend's own generator.
        (
            {"stochastic_layers": ["drop"]},
            "each backend draws its own random numbers; --random portable draws the same",
        ),
        ({"stochastic_layers": ["drop"], "random": "backend"}, "each backend draws its own random numbers"),
        ({"stochastic_layers": ["drop"], "random": "portable"}, "drawing portably: every backend draws the same"),
        (
            {"stochastic_layers": ["drop"], "stochastic_outside": ["drop"], "random": "portable"},
            "drawing from its framework's own generator, outside Keras's random ops",
        ),
    ],
)
def test_a_stochastic_layer_where_training_parts_is_said_to_draw_as_it_drew(manifest, said):
    from backendlab.compare.locate import _stochastic_note

    assert said in _stochastic_note({"phase": "forward", "layer": "drop"}, manifest)
    assert _stochastic_note({"phase": "forward", "layer": "dense"}, manifest) == ""
    assert _stochastic_note({"phase": "gradient", "layer": "drop"}, manifest) == ""
