"""backendlab compare across real worker processes (the `all` nox session has every backend)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ctrl_c_as_in_a_terminal, report_json, run_cli
from known_differences import ZOO_MAY_PART

from backendlab.backends import BACKEND_NAMES
from backendlab.compare import compare
from backendlab.compare.results import AGREE_ROUNDING

FAULTY = "tests/fixtures/faulty_models.py:build"


def _compare_with_faults(out: Path, faults: str, *args: str):
    """``backendlab compare`` on the fault fixture, each backend doing what ``faults`` says (see faulty_models.py)."""
    return run_cli("compare", "--model", FAULTY, *args, "--out", str(out), env={"BACKENDLAB_TEST_FAULTS": faults})


def _faulty(pool, out: Path, faults: str, **options) -> dict:
    """The same, in this process on the session's warm workers: report.json as written."""
    report = compare(model=FAULTY, out=str(out), pool=pool, env={"BACKENDLAB_TEST_FAULTS": faults}, **options)
    assert report.exit_code == 1
    return report_json(out)


@pytest.fixture(scope="module")
def seed_compare(tmp_path_factory):
    """The seed example on all three backends, through the command line."""
    out = tmp_path_factory.mktemp("seed")
    proc = run_cli("compare", "--epochs", "5", "--out", str(out / "run"), "--json", str(out / "copy.json"))
    return proc, out


def test_seed_example_agrees_on_every_backend(seed_compare):
    proc, out = seed_compare
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = report_json(out / "run")
    assert report["verdict"] == "agree" and report["criterion"]["kind"] == "exact"
    assert report["settings"]["rtol"] == 1e-3 and report["settings"]["atol"] == 1e-3
    assert list(report["backends"]) == list(BACKEND_NAMES)
    checksums = {b["initial_checksum"] for b in report["backends"].values()}
    assert len(checksums) == 1  # the same starting weights everywhere
    for name, b in report["backends"].items():
        assert b["status"] == "ok" and b["verdict"] == "agree", name
        assert len(b["step_losses"]) == 5 * 15
        if name != report["reference"]:
            assert b["differences"]["epoch_metrics"]["max_rel"] <= 1e-4
            assert b["differences"]["weights"]["within"] and b["differences"]["predictions"]["within"]
    assert json.loads((out / "copy.json").read_text())["verdict"] == "agree"


def test_seed_example_keras_files_cross_every_pair_of_backends(seed_compare):
    _, out = seed_compare
    portability = report_json(out / "run")["portability"]
    assert set(portability) == set(BACKEND_NAMES)
    for saver, row in portability.items():
        assert set(row) == {*BACKEND_NAMES, "numpy"}
        for loader, cell in row.items():
            assert cell["status"] == "agree" and cell["max_abs"] <= 1e-5, (saver, loader, cell)


def test_seed_report_files_and_numpy_reference(seed_compare):
    proc, out = seed_compare
    run = out / "run"
    md = (run / "report.md").read_text()
    assert md.startswith("# backendlab compare: AGREE")
    assert "| saved on \\ loaded on | jax | tensorflow | torch | numpy |" in md
    assert (run / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numpy_ref = report_json(run)["numpy_reference"]
    assert {numpy_ref[b]["status"] for b in BACKEND_NAMES} == {"agree"}
    assert "verdict: AGREE" in proc.stdout
    assert not list(run.rglob("*.tmp*"))  # nothing half-written


@pytest.mark.parametrize("model", ["cnn", "rnn", "transformer", "functional"])
def test_every_zoo_model_agrees_across_backends(model, pool, tmp_path):
    report = compare(
        pool=pool,
        model=model,
        epochs=2,
        batch_size=64,
        optimizer="adam",
        learning_rate=0.003,
        out=str(tmp_path),
        portability=False,
    )
    details = {b: (r.status, r.verdict, r.message, r.divergence) for b, r in report.backends.items()}
    for r in report.backends.values():
        if r.backend == report.reference:
            continue
        if r.verdict == "diverge" and (model, r.backend) in ZOO_MAY_PART:
            assert r.divergence["phase"] == ZOO_MAY_PART[model, r.backend], details
            continue
        if r.verdict == AGREE_ROUNDING and (model, r.backend) in ZOO_MAY_PART:
            continue  # outside the tolerance by rounding alone: the noise floor says so
        assert r.verdict == "agree", details
        assert r.differences["weights"].within and r.differences["predictions"].within


def test_a_layer_that_computes_differently_on_one_backend_diverges(pool, tmp_path):
    # floor=False: a drift this size is no rounding, and the twins would double the run's training.
    report = _faulty(pool, tmp_path, "torch:drift", backends=["jax", "torch"], epochs=2, portability=False, floor=False)
    torch = report["backends"]["torch"]
    assert report["verdict"] == "diverge"
    assert torch["status"] == "ok" and torch["verdict"] == "diverge"
    # The step named is truly the first outside |a - ref| <= atol + rtol * |ref|.
    step = torch["first_divergent_step"]
    mine, ref = np.array(torch["step_losses"]), np.array(report["backends"]["jax"]["step_losses"])
    outside = np.abs(mine - ref) > 1e-3 + 1e-3 * np.abs(ref)
    assert step is not None and outside[step - 1] and not outside[: step - 1].any()
    assert torch["message"].startswith("outside rtol=0.001, atol=0.001 in ")
    assert f"losses left the tolerance at step {step}" in torch["message"]


def test_worker_that_raises_or_is_killed_is_reported_and_the_rest_kept(tmp_path):
    proc = _compare_with_faults(tmp_path, "tensorflow:raise,torch:crash", "--epochs", "2", "--no-portability")
    assert proc.returncode == 1
    report = report_json(tmp_path)
    b = report["backends"]
    assert report["verdict"] == "failed"
    assert b["jax"]["status"] == "ok" and len(b["jax"]["step_losses"]) == 30
    assert b["tensorflow"]["status"] == "failed"
    assert b["tensorflow"]["message"].startswith(
        "RuntimeError: Exception encountered when calling Fault.call(). injected failure in Fault.call"
    )
    assert "Traceback" in b["tensorflow"]["log_tail"] or "RuntimeError" in b["tensorflow"]["log_tail"]
    assert b["torch"]["status"] == "crashed" and b["torch"]["message"] == "worker killed by signal SIGKILL"
    assert (tmp_path / "jax" / "result.json").exists()
    assert "torch: worker killed by signal SIGKILL" in proc.stdout


def test_worker_that_hangs_times_out_and_nan_is_reported_with_its_step(pool, tmp_path):
    faults = "torch:hang,tensorflow:nan"
    b = _faulty(pool, tmp_path, faults, epochs=1, portability=False, timeout=25)["backends"]
    assert b["jax"]["status"] == "ok"
    assert b["torch"]["status"] == "timeout" and b["torch"]["message"] == "no result after the 25s timeout; killed"
    assert b["tensorflow"]["status"] == "nonfinite" and b["tensorflow"]["nonfinite_step"] == 1
    assert b["tensorflow"]["message"] == "training loss became nan at step 1"


def test_with_backend_randomness_stochastic_layers_are_detected_and_compared_honestly(pool, tmp_path):
    """--random backend: each backend's own generator, so only a statistical verdict (tests/cross/
    test_compare_random.py has the default, portable randomness, held to the exact tolerance)."""
    model = "tests/fixtures/user_models.py:with_dropout"
    loose = compare(
        model=model,
        backends=["jax", "torch"],
        epochs=3,
        portability=False,
        random="backend",
        out=str(tmp_path / "loose"),
        pool=pool,
    )
    assert loose.stochastic_layers and loose.criterion.kind == "statistical"
    assert loose.random == "backend" and set(loose.stochastic_marks.values()) == {"backend"}
    assert "draw from each backend's own random generator (--random backend)" in loose.notes[0]
    torch = loose.backends["torch"]
    assert torch.status == "ok" and torch.verdict == "agree", (torch.status, torch.message, torch.log_tail)
    # Dropout masks differ per backend: the step losses do not match exactly...
    assert not torch.differences["step_losses"].within
    # ...but the final metrics do, loosely, and that is what decides here.
    assert torch.differences["final_metrics_statistical"].within and torch.verdict == "agree"

    exact = compare(
        pool=pool,
        model=model,
        backends=["jax", "torch"],
        epochs=3,
        portability=False,
        disable_stochastic=True,
        random="backend",
        out=str(tmp_path / "exact"),
    )
    assert exact.criterion.kind == "exact" and exact.verdict == "agree"
    assert exact.backends["torch"].differences["step_losses"].within
    assert "switched off" in exact.notes[0]


def test_interrupted_run_leaves_finished_results_readable(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "backendlab", "compare", "--epochs", "3", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    deadline = time.time() + 300
    while not (out / "jax" / "result.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while the next backend trains
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    report = report_json(out)
    assert report["verdict"] == "incomplete"
    assert report["backends"]["jax"]["status"] == "ok" and len(report["backends"]["jax"]["step_losses"]) == 45
    assert not list(out.rglob("*.tmp*"))


def test_compare_unknown_model_exits_2(tmp_path, backend):
    proc = run_cli("compare", "--backends", backend, "--model", "vgg", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "backendlab: error: unknown model 'vgg': use one of mlp, cnn, rnn, transformer, functional, "
        "mobilenet, resnet, bert, gpt, or path/to/file.py:build / package.module:build returning a keras.Model"
    )


def test_a_subclassed_model_with_registered_custom_layers_agrees_everywhere(pool, tmp_path):
    """A user's model: registered layers built lazily in build(), compiled with Adam (a false DIVERGE before)."""
    model = "tests/fixtures/registered_models.py:subclassed_registered"
    report = compare(model=model, epochs=2, out=str(tmp_path), pool=pool)
    details = {b: (r.status, r.verdict, r.message) for b, r in report.backends.items()}
    assert report.verdict == "agree" and report.criterion.kind == "exact", details
    assert report.stochastic_layers == []
    for saver, row in report.portability.items():
        assert set(row) == {*BACKEND_NAMES, "numpy"}
        for loader, cell in row.items():
            assert cell["status"] == "agree" and cell["max_abs"] <= 1e-5, (saver, loader, cell)
    assert {report.numpy_reference[b]["status"] for b in BACKEND_NAMES} == {"agree"}
    assert max(report.numpy_reference[b]["max_abs"] for b in BACKEND_NAMES) <= 1e-5


def test_a_reused_out_never_reads_or_keeps_an_earlier_runs_files(pool, tmp_path):
    out = tmp_path / "run"
    # What an earlier run might have left: a torch model and predictions, starting weights, an AGREE report.
    (out / "torch").mkdir(parents=True)
    for name in ("model.keras", "predictions.npz", "initial_predictions.npz", "weights.npz", "result.json"):
        (out / "torch" / name).write_bytes(b"stale")
    (out / "initial.weights.h5").write_bytes(b"stale weights")
    (out / "report.md").write_text("# backendlab compare: AGREE\n")
    report = _faulty(pool, out, "torch:raise", backends=["jax", "torch"], epochs=1)
    assert report["backends"]["jax"]["status"] == "ok"  # it made fresh starting weights, not the stale file
    assert report["backends"]["torch"]["status"] == "failed"
    assert set(report["portability"]) == {"jax"}  # no stale torch model was loaded anywhere
    # torch's starting predictions, if it got that far, are this run's own (written before it raised).
    for name in ("initial_predictions.npz", "predictions.npz", "weights.npz", "result.json"):
        path = out / "torch" / name
        assert not path.exists() or path.read_bytes() != b"stale", name
    assert (out / "report.md").read_text().startswith("# backendlab compare: FAILED")
    assert not (out / "torch" / "model.keras").exists()
