"""Where and why a backend's step differs: ``compare.locate`` on probe arrays built by hand.

tests/cross/test_locate.py does the same on real probes of every backend.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backendlab.compare.locate import DEFAULT_THRESHOLD, Divergence, locate, phases_table

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
    ]
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
