"""The same seed gives the same training on every backend: portable starting weights in plain `train`."""

from __future__ import annotations

import pytest
from helpers import on_backends

from backendlab.backends import BACKEND_NAMES
from backendlab.compare import DEFAULT_ATOL, DEFAULT_RTOL

#: The zoo's small models. The real architectures (mobilenet, resnet, bert, gpt) take tens of seconds
#: per backend: compare trains them in test_zoo_architectures.py, and test_init checks their starts.
SMALL = ("mlp", "cnn", "rnn", "transformer", "functional")

# Each backend in its own process (a warm worker), as a user switching KERAS_BACKEND and rerunning would.
SCRIPT = f"""
from backendlab.training import run_training
out = {{}}
for name in {SMALL!r}:
    r = run_training(name, epochs=2, optimizer="adam", seed=0)
    out[name] = {{"start": r.start_checksum, "loss": r.history["loss"], "stochastic": r.stochastic_layers}}
seed = run_training(seed=0)
out["seed"] = {{"start": seed.start_checksum, "test_loss": seed.test["loss"], "note": seed.start_note}}
result = out
"""


@pytest.fixture(scope="module")
def runs(pool, tmp_path_factory) -> dict[str, dict]:
    return on_backends(pool, SCRIPT, tmp_path_factory.mktemp("same-seed"))


def test_every_zoo_model_starts_from_the_same_weights_on_every_backend(runs):
    for name in SMALL:
        starts = {backend: runs[backend][name]["start"] for backend in BACKEND_NAMES}
        assert len(set(starts.values())) == 1, (name, starts)


def test_deterministic_models_train_the_same_on_every_backend(runs):
    ref = BACKEND_NAMES[0]
    for name in SMALL:
        if runs[ref][name]["stochastic"]:
            continue
        for backend in BACKEND_NAMES[1:]:
            mine, theirs = runs[backend][name]["loss"], runs[ref][name]["loss"]
            assert mine == pytest.approx(theirs, rel=DEFAULT_RTOL, abs=DEFAULT_ATOL), (name, backend)


def test_the_seed_example_gives_the_same_test_loss_to_six_digits(runs):
    losses = {backend: runs[backend]["seed"]["test_loss"] for backend in BACKEND_NAMES}
    ref = losses[BACKEND_NAMES[0]]
    assert all(abs(v - ref) <= 1e-6 * abs(ref) + 1e-7 for v in losses.values()), losses
    assert {runs[b]["seed"]["note"] for b in BACKEND_NAMES} == {None}  # every variable drawn portably
