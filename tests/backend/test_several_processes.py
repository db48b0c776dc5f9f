"""``--processes 2``: two local processes that behave like two hosts train exactly like one process.

On the session's backend: the same per-epoch losses and final weights as one process with the same
global batch; each process reads only its own share of every global batch (it notes what it read);
a model saved under two processes continues under one like an uninterrupted run; one process that
fails (raises, or is killed mid-run) ends the run within seconds, with its error line, and leaves no
process behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import QUIET_ENV

from backendlab.runspec import RunSpec
from backendlab.training import RECORD_READS, epoch_orders, own_share, pad_last_batch, resumed_spec, run_training

EXACT = 1e-5

# 455 training samples in batches of 64: a last batch of 7, which two processes split 3 + 4 (or 4 + 4, padded).
ARGS = ("--epochs", "2", "--batch-size", "64")

RUN_ID = "BACKENDLAB_TEST_RUN_ID"

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc")


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backendlab", "train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **QUIET_ENV, **(env or {})},
    )


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(path).get_weights()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process for 2 epochs and for 3; two processes for 2 (saved), then resumed under one for 1 more."""
    folder = tmp_path_factory.mktemp("processes")
    reads = folder / "reads"
    reads.mkdir()
    done = _cli(*ARGS, "--processes", "2", "--save", str(folder / "two.keras"), "--json", str(folder / "two.json"),
                env={RECORD_READS: str(reads)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    one = run_training("mlp", epochs=2, batch_size=64, save=folder / "one.keras")
    three = run_training("mlp", epochs=3, batch_size=64, save=folder / "three.keras")
    spec = resumed_spec(folder / "two.keras", RunSpec(epochs=1, processes=1), {"epochs", "processes"})
    resumed = run_training(spec, resume=folder / "two.keras", save=folder / "resumed.keras")
    return {
        "folder": folder,
        "one": one.to_dict(),
        "two": json.loads((folder / "two.json").read_text()),
        "three": three.to_dict(),
        "resumed": resumed.to_dict(),
    }


def test_two_processes_train_like_one_with_the_same_global_batch(runs):
    one, two = runs["one"], runs["two"]
    assert two["config"]["processes"] == 2 and len(two["history"]["loss"]) == 2
    assert set(two["history"]) == set(one["history"])
    for key, values in two["history"].items():
        np.testing.assert_allclose(values, one["history"][key], rtol=EXACT, atol=0, err_msg=key)
    np.testing.assert_allclose(two["test"]["loss"], one["test"]["loss"], rtol=EXACT)
    for a, b in zip(_weights(runs["folder"] / "one.keras"), _weights(runs["folder"] / "two.keras"), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=EXACT)


def test_each_process_reads_only_its_own_share_of_every_global_batch(runs):
    config = RunSpec.from_dict(runs["two"]["config"])
    reads = {r: (runs["folder"] / "reads" / f"reads-{r}.txt").read_text().split() for r in (0, 1)}
    orders = epoch_orders(455, 2, config.seed)
    if config.loop == "fit":  # fit's last batch padded to split evenly: each pads with its own rows
        orders = [pad_last_batch(order, config)[0] for order in orders]
    expected = {r: [own_share(order, config, r) for order in orders] for r in (0, 1)}
    for r in (0, 1):
        assert [int(i) for i in reads[r]] == np.concatenate(expected[r]).tolist()
    for epoch in range(2):  # the two shares: apart, and together the whole epoch
        assert not set(expected[0][epoch]) & set(expected[1][epoch])
        assert set(expected[0][epoch]) | set(expected[1][epoch]) == set(range(455))
    assert len(reads[0]) + len(reads[1]) == 2 * 455 + (2 if config.loop == "fit" else 0)


def test_saved_under_two_processes_continues_under_one_like_an_uninterrupted_run(runs):
    resumed, three = runs["resumed"], runs["three"]
    assert resumed["config"]["processes"] == 1 and resumed["config"]["initial_epoch"] == 2
    np.testing.assert_allclose(resumed["history"]["loss"], three["history"]["loss"][2:], rtol=EXACT, atol=0)
    pairs = zip(_weights(runs["folder"] / "three.keras"), _weights(runs["folder"] / "resumed.keras"), strict=True)
    for a, b in pairs:
        np.testing.assert_allclose(b, a, rtol=0, atol=EXACT)


def _left(run_id: str) -> list[int]:
    """Processes, zombies aside, that carry ``run_id`` in their environment."""
    entry, found = f"{RUN_ID}={run_id}".encode(), []
    for path in Path("/proc").iterdir():
        try:
            if path.name.isdigit() and entry in (path / "environ").read_bytes().split(b"\0"):
                if (path / "stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
                    found.append(int(path.name))
        except OSError:
            continue
    return found


def test_a_process_that_fails_ends_the_run_fast_with_its_error_line_and_leaves_none_behind(backend, tmp_path):
    run_id = uuid.uuid4().hex
    env = {"BACKENDLAB_TEST_FAULTS": f"{backend}:raise@1", RUN_ID: run_id}
    started = time.monotonic()
    model = "tests/fixtures/faulty_models.py:build"
    done = _cli("--model", model, "--data", "breast_cancer", *ARGS, "--processes", "2", env=env, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]  # the launcher's line, quoting the process's own error
    assert last.startswith("backendlab: error: process 1 of 2 failed (exit status 1): RuntimeError: "), last
    assert "injected failure in Fault.call" in last
    assert time.monotonic() - started < 60  # start-up included; no wait for a collective's timeout
    assert _left(run_id) == []


def _environ(pid: int) -> dict[str, str]:
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(e.decode(errors="replace").split("=", 1) for e in entries if b"=" in e)


def _rank(pid: int) -> str | None:
    """The rank of a process that trains; None for others (torchrun's agents, the launcher)."""
    env = _environ(pid)
    try:
        if "torch.distributed.run" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
            return None
    except OSError:  # gone meanwhile
        return None
    return env.get("RANK", env.get("BACKENDLAB_PROCESS_ID"))


def test_a_process_killed_mid_run_ends_the_run_within_seconds_and_leaves_none_behind(tmp_path):
    run_id = uuid.uuid4().hex
    env = {**os.environ, **QUIET_ENV, RUN_ID: run_id, RECORD_READS: str(tmp_path)}
    command = [sys.executable, "-m", "backendlab", "train", "--processes", "2", "--epochs", "100", "--batch-size", "64"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "reads-1.txt").exists():  # process 1 took its first share: training
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.poll() else "no start"
            time.sleep(0.1)
        # Process 1 itself, the one that trains (under torch, torchrun's rank, not its agent).
        victim = next(p for p in _left(run_id) if _rank(p) == "1")
        os.kill(victim, 9)
        killed = time.monotonic()
        _, err = run.communicate(timeout=30)
        assert time.monotonic() - killed < 10
    finally:
        run.kill()
    assert run.returncode == 1
    assert err.strip().splitlines()[-1] == "backendlab: error: process 1 of 2 was killed by signal SIGKILL"
    assert _left(run_id) == []


def test_bad_input_found_in_every_process_is_said_once_with_exit_status_2():
    model = "tests/fixtures/user_models.py:three_outputs"
    done = _cli("--model", model, "--processes", "2", "--batch-size", "64", "--epochs", "1")
    assert done.returncode == 2, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("backendlab: error: ")]
    assert said == [
        f"backendlab: error: model '{model}' output has shape (None, 3) but data 'breast_cancer' has 2 classes "
        "(binary): its last dimension must be 1 (or 2 softmax units)"
    ]
