"""Where and why a backend's step differs, on real probes (tests/unit/test_locate.py: on made-up ones).

Each model of ``fixtures/divergent_models.py`` (and models that must agree) is replayed on the
reference backend, the same step is probed on the reference and on another backend, and ``locate``
must name the phase and the place each fixture was built to differ in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES

from backendlab.compare.locate import DEFAULT_THRESHOLD, Divergence, locate
from backendlab.workers.protocol import Job

# --- real probes, across backends ---------------------------------------------------------

REFERENCE = "jax"
STEPS = 2  # replayed before the probed step, so the loaded state carries optimizer slots
DIVERGENT = FIXTURES / "divergent_models.py"
REGISTERED = FIXTURES / "registered_models.py"

#: divergent_models.py's models: name -> (data, the backend that differs, the phase, the place named)
EXPECTED = {
    "forward_skew": ("breast_cancer", "torch", "forward", "skew"),
    "gradient_gate": ("breast_cancer", "torch", "gradient", "gate/gate"),
    "loss_regularizer": ("breast_cancer", "tensorflow", "loss", "hidden/kernel"),
    "sparse_embedding": ("tokens", "tensorflow", "update", "embedding/embeddings"),
    "state_momentum": ("breast_cancer", "tensorflow", "state", "norm/moving_"),
}


def _run(model: str, data: str | None = None, **options) -> dict:
    return {"model": model, "data": data, "epochs": 1, "batch_size": 32, **options}


#: name -> (run, {backend: expected (phase, place) or None for "agrees"})
CASES: dict[str, tuple[dict, dict]] = {
    name: (
        _run(f"{DIVERGENT}:{name}", f"{DIVERGENT}:{data}" if data == "tokens" else data),
        {backend: (phase, place)},
    )
    for name, (data, backend, phase, place) in EXPECTED.items()
}
CASES["forward_skew"][1]["tensorflow"] = None  # a Sequential model agrees where nothing differs
CASES["sparse_embedding"][1]["torch"] = None  # Embedding(mask_zero) -> GRU, dense gradients: agrees
for _name, _spec in {
    "functional": _run("functional"),  # two dict inputs, a shared layer, two outputs
    "subclassed": _run(f"{REGISTERED}:subclassed_registered"),  # lazily built custom layers
    # BN + L2, and a Dropout drawing portably: probed as the run drew, every backend has its masks
    "batchnorm": _run(f"{REGISTERED}:batchnorm_dropouts"),
}.items():
    CASES[_name] = (_spec, {"tensorflow": None, "torch": None})


LOCATOR = "backendlab.compare.probe:handle"


def run_probe_jobs(pool, jobs: dict[str, list[dict]], folder: Path) -> dict[str, list[dict]]:
    """Each backend's jobs, in order, on its warm worker, the backends side by side; job ``i`` works in
    ``folder/<backend>/i``. What each job returned, per backend."""
    results: dict[str, list[dict]] = {backend: [] for backend in jobs}
    for i in range(max(len(todo) for todo in jobs.values())):
        tasks = [Job(b, LOCATOR, todo[i], folder / b / str(i)) for b, todo in jobs.items() if i < len(todo)]
        for task, done in zip(tasks, pool.run_many(tasks), strict=True):
            assert done.ok, f"{task.backend} job {i} failed: {done.message}\n{done.log_tail}"
            results[task.backend].append(done.result)
    return results


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "probe.npz") as npz:
        return {key: npz[key] for key in npz.files}


@pytest.fixture(scope="module")
def probes(pool, tmp_path_factory) -> dict:
    """``{(case, backend): (manifest, arrays)}``, and ``(case, "replay")``: the replay's result."""
    root = tmp_path_factory.mktemp("probes")
    reference_jobs = []
    for name, (run, _) in CASES.items():
        state = str(root / f"{name}.state.npz")
        reference_jobs.append({"kind": "replay", "run": run, "initial_weights": None, "steps": STEPS, "state": state})
        reference_jobs.append({"kind": "probe", "run": run, "state": state, "step": STEPS})
    results = run_probe_jobs(pool, {REFERENCE: reference_jobs}, root)[REFERENCE]
    found: dict = {}
    for i, name in enumerate(CASES):
        found[name, "replay"] = results[2 * i]
        found[name, REFERENCE] = (results[2 * i + 1], _arrays(root / REFERENCE / str(2 * i + 1)))
    others = sorted({backend for _, expected in CASES.values() for backend in expected})
    todo = {b: [name for name, (_, expected) in CASES.items() if b in expected] for b in others}
    jobs = {
        backend: [
            {"kind": "probe", "run": CASES[name][0], "state": str(root / f"{name}.state.npz"), "step": STEPS}
            for name in names
        ]
        for backend, names in todo.items()
    }
    for backend, results in run_probe_jobs(pool, jobs, root).items():
        for i, (name, result) in enumerate(zip(todo[backend], results, strict=True)):
            found[name, backend] = (result, _arrays(root / backend / str(i)))
    return found


def _located(probes, name: str, backend: str) -> Divergence:
    (ref_manifest, ref), (manifest, mine) = probes[name, REFERENCE], probes[name, backend]
    return locate(ref, ref_manifest, mine, manifest, step=STEPS + 1)


CROSS_CASES = [(name, backend) for name, (_, expected) in CASES.items() for backend in expected]


@pytest.mark.parametrize("name,backend", CROSS_CASES, ids=[f"{n}-{b}" for n, b in CROSS_CASES])
def test_locate_names_where_each_model_parts(probes, name, backend):
    expected = CASES[name][1][backend]
    found = _located(probes, name, backend)
    print(json.dumps(found.to_dict()))
    if expected is None:
        assert found.phase is None, found.explanation
        assert found.rel < DEFAULT_THRESHOLD
        return
    phase, place = expected
    assert found.phase == phase, found.explanation
    assert place in f"{found.layer} {found.variable}", found
    assert found.rel > 1e-3 and found.upstream_max_rel < DEFAULT_THRESHOLD


def test_replay_takes_the_steps_it_is_asked_and_saves_every_variable(probes):
    replay = probes["sparse_embedding", "replay"]
    assert replay["iterations"] == STEPS
    # embeddings, GRU kernel/recurrent/bias, head kernel/bias, a seed state, and RMSprop's iteration,
    # learning rate and six velocities
    assert replay["variables"] == 15


def test_tensorflow_hands_rmsprop_a_sparse_gradient_and_the_probe_keeps_it(probes):
    tf_manifest, _ = probes["sparse_embedding", "tensorflow"]
    jax_manifest, _ = probes["sparse_embedding", REFERENCE]
    assert [p.split("/")[-1] for p in tf_manifest["sparse_gradients"]] == ["embeddings"]
    assert jax_manifest["sparse_gradients"] == []
    found = _located(probes, "sparse_embedding", "tensorflow")
    assert found.explanation.startswith("the update of sequential/embedding/embeddings differs by")


def test_the_forward_pass_reaches_every_kind_of_layer(probes):
    subclassed = probes["subclassed", REFERENCE][0]["layers"]
    assert {"Block", "Scale", "Dense"} <= {layer["class"] for layer in subclassed["reached"]}
    recurrent = probes["sparse_embedding", REFERENCE][0]["layers"]
    assert [layer["class"] for layer in recurrent["reached"]] == ["Embedding", "GRU", "Dense"]
    assert {"GRUCell", "InputLayer"} == {layer["class"] for layer in recurrent["not_reached"]}
    functional, arrays = probes["functional", REFERENCE]
    assert {"forward/shared#0/0", "forward/shared#1/0"} <= set(arrays)  # one shared layer, called twice
    assert {"loss/output/label", "loss/output/score", "loss/total"} <= set(arrays)
    batchnorm = probes["batchnorm", REFERENCE][1]
    assert any(k.startswith("loss/regularization/") and k.endswith("/kernel") for k in batchnorm)
    assert "loss/additional" in batchnorm
    assert any(k.endswith("bn/moving_mean") for k in batchnorm if k.startswith("state/"))


def test_a_state_saved_on_jax_loads_by_path_everywhere(probes):
    for (name, backend), value in probes.items():
        if backend not in ("replay", REFERENCE):
            assert value[0]["state_loaded_by"] == "path", (name, backend)


# --- compare locates by itself -------------------------------------------------------------------------------------


def test_compare_locates_a_diverging_backend_and_reports_it_everywhere(pool, tmp_path):
    """The sparse-embedding case end to end: compare names TensorFlow's embedding update, unasked."""
    from backendlab.compare import compare

    model, data = f"{DIVERGENT}:sparse_embedding", f"{DIVERGENT}:tokens"
    report = compare(model=model, data=data, epochs=1, portability=False, floor=False, pool=pool, out=str(tmp_path))
    tf, torch = report.backends["tensorflow"], report.backends["torch"]
    assert tf.verdict == "diverge" and torch.verdict == "agree"
    assert torch.divergence is None  # agreeing backends are located only when --locate asks
    d = tf.divergence
    keys = {"step", "phase", "layer", "layer_class", "variable", "abs", "rel", "upstream_max_rel", "explanation"}
    assert set(d) == keys | {"during", "known"} and d["during"] == "training"
    assert (d["phase"], d["layer"], d["layer_class"]) == ("update", "embedding", "Embedding")
    assert d["variable"] == "sequential/embedding/embeddings" and d["step"] == max(tf.first_divergent_step - 1, 1)
    assert d["known"] == "tensorflow-sparse-embedding-gradient"  # the catalog explains it (compare.known)
    assert d["rel"] > 1e-2 and d["upstream_max_rel"] < DEFAULT_THRESHOLD
    assert [row["phase"] for row in tf.divergence_phases] == ["forward", "loss", "gradient", "update", "state"]
    written = json.loads((tmp_path / "report.json").read_text())["backends"]["tensorflow"]["divergence"]
    assert written == d
    md = (tmp_path / "report.md").read_text()
    assert "## Where it first differs" in md and "| update |" in md
    assert f"**tensorflow**: step {d['step']} first differs in update of embedding (Embedding)" in md


def test_locate_on_every_backend_says_float32_noise_where_they_agree(pool, tmp_path):
    from backendlab.compare import compare

    report = compare(model="functional", epochs=1, portability=False, locate=True, pool=pool, out=str(tmp_path))
    assert report.verdict == "agree"
    for name in ("tensorflow", "torch"):
        d = report.backends[name].divergence
        assert d["phase"] is None and d["step"] == 1, d
        assert d["explanation"].startswith("no place differs by more than 1e-05 relative"), d
