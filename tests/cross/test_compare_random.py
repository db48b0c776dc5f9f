"""compare on models that draw random numbers, under --random portable (the default): Keras's random layers
draw the same numbers on every backend and are held to the exact tolerance; a layer drawing with its
framework's own generator is named as the one thing left statistical. One compare run per model, shared."""

from __future__ import annotations

import pytest

from backendlab.backends import BACKEND_NAMES
from backendlab.compare import compare

EVERY_DRAW = "tests/fixtures/random_models.py:every_draw"
OWN_NOISE = "tests/fixtures/outside_random_models.py:own_noise"


@pytest.fixture(scope="module")
def every_draw(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("every-draw")
    return compare(model=EVERY_DRAW, data="sequences", epochs=1, portability=False, out=str(out), pool=pool), out


@pytest.fixture(scope="module")
def own_noise(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("own-noise")
    return compare(model=OWN_NOISE, epochs=1, portability=False, out=str(out), pool=pool), out


def test_dropout_spatial_dropout_noise_and_lstm_dropout_agree_exactly(every_draw):
    report, out = every_draw
    details = {b: (r.status, r.verdict, r.message) for b, r in report.backends.items()}
    assert report.verdict == "agree" and report.criterion.kind == "exact", details
    assert set(report.backends) == set(BACKEND_NAMES)
    steps = len(report.backends[report.reference].step_losses)
    for backend, r in report.backends.items():
        if backend != report.reference:
            assert r.differences["step_losses"].count == steps > 0, backend
            assert r.differences["step_losses"].max_rel <= 1e-5, (backend, r.differences["step_losses"])
            assert r.differences["weights"].within and r.differences["predictions"].within, backend
    # Every random layer is still listed, each marked as drawing portably (names without Keras's _N suffix).
    assert report.random == "portable"
    marks = {name.rstrip("0123456789").rstrip("_"): mark for name, mark in report.stochastic_marks.items()}
    assert marks == {
        "gaussian_noise": "portable",
        "spatial_dropout1d": "portable",
        "lstm": "portable",
        "dropout": "portable",
    }
    assert "draw portably (--random portable)" in report.notes[0]
    written = (out / "report.md").read_text()
    assert "Stochastic layers (--random portable): `gaussian_noise" in written
    assert written.count(" portable, `") == 3  # four layers, each marked portable


def test_a_layer_drawing_from_its_frameworks_generator_is_named_as_the_one_left_statistical(own_noise):
    report, out = own_noise
    details = {b: (r.status, r.verdict, r.message) for b, r in report.backends.items()}
    assert report.criterion.kind == "statistical" and report.verdict == "agree", details
    assert report.stochastic_marks == {"own_noise": "outside Keras", "drop": "portable"}
    note = report.notes[0]
    assert note.startswith("own_noise draws from the framework's own random generator, outside Keras's random ops")
    assert "The other stochastic layers (drop) draw portably." in note
    assert "`drop` portable, `own_noise` outside Keras (statistical)." in (out / "report.md").read_text()
