"""Threads: idle workers' CPU while one trains; torch alone vs inside compare; BACKENDLAB_THREADS=1 vs unset.

Each part runs with ``BACKENDLAB_THREADS=1`` and with it unset (each framework's own count):

1. ``idle``: a pool with a warm worker per backend (each trains once, so its thread pools exist),
   then PyTorch trains for ``--idle-s`` seconds while the CPU time (``/proc/<pid>/stat``
   utime + stime, every thread) of every other worker and of this orchestrator is read before and after;
2. ``train``: PyTorch's ``train_time_s`` as ``KERAS_BACKEND=torch backendlab train`` reports it alone, and
   as ``backendlab compare`` reports it for its torch worker (``report.json``'s ``timing.train_s``),
   the median of ``--repeats`` each, on the machine as it is and with ``--burners`` processes
   (``python -c 'while True: pass'``, each in a session of its own) running beside it;
3. ``wait`` (only when asked for): PyTorch alone with its own count, its waiting threads spinning
   (``OMP_WAIT_POLICY=ACTIVE``) or sleeping (``PASSIVE``), and with ``BACKENDLAB_THREADS=1``.

The machine's load average (``os.getloadavg``) is printed with each number: this benchmark measures
how training suffers from the load, so the load belongs to the result. Linux only (``/proc``).

    python benchmarks/threads.py                         # idle and train, 3 repeats, 2 burners
    python benchmarks/threads.py --parts idle,train,wait --repeats 1 --burners 0 --idle-s 1 --epochs 1  # smallest
    python benchmarks/threads.py --parts wait --json threads.json

Nothing is asserted: the numbers are printed, and with ``--json`` written (atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backendlab.results import check_writable, write_json
from backendlab.workers.runner import WorkerPool

BACKENDS = ("jax", "tensorflow", "torch")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The two ways compared: each framework's own count, and one thread for every worker.
THREADS = {"own count": None, "BACKENDLAB_THREADS=1": "1"}


def train(job: dict, workdir: Path, progress) -> dict:
    """A job handler (run in a worker): train the seed's MLP for ``job["epochs"]`` epochs; its time and threads."""
    from backendlab.backends import impl
    from backendlab.training import run_training

    result = run_training("mlp", epochs=job["epochs"])
    return {"train_time_s": result.train_time_s, "threads": impl().threads()}


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far, all its threads (utime + stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


@contextlib.contextmanager
def threads_env(value: str | None):
    """``BACKENDLAB_THREADS`` set to ``value`` (None: unset) for the block, in this process and what it starts."""
    saved = os.environ.pop("BACKENDLAB_THREADS", None)
    if value is not None:
        os.environ["BACKENDLAB_THREADS"] = value
    try:
        yield
    finally:
        os.environ.pop("BACKENDLAB_THREADS", None)
        if saved is not None:
            os.environ["BACKENDLAB_THREADS"] = saved


@contextlib.contextmanager
def burners(count: int):
    """``count`` processes that spin on a core each, for as long as the block runs.

    Each in a session of its own, as other users' work is: Linux's autogroup shares the CPU among sessions
    first, so burners in the session of the ``backendlab train`` they load would weigh on it alone (compare's
    workers have sessions of their own), and alone would look slower than compare by that alone."""
    spin = [sys.executable, "-c", "while True: pass"]
    procs = [subprocess.Popen(spin, start_new_session=True) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def idle_part(idle_s: float, epochs: int, folder: Path) -> dict:
    """CPU seconds each idle worker (and this orchestrator) used while PyTorch trained for ``idle_s``."""
    handler = f"{Path(__file__).resolve()}:train"
    with WorkerPool() as pool:
        pool.start([*BACKENDS, "numpy"])
        pool.wait_ready([*BACKENDS, "numpy"])
        for backend in BACKENDS:  # each trains once: its thread pools exist, then wait
            done = pool.run(backend, handler, {"epochs": 1}, folder / f"warm-{backend}")
            assert done.ok, done.log_tail
        others = {b: pool.workers[(b, 1)].tree.proc.pid for b in (*BACKENDS, "numpy") if b != "torch"}
        before = {b: cpu_s(pid) for b, pid in others.items()}
        me = time.process_time()
        start, jobs, threads = time.perf_counter(), 0, None
        while time.perf_counter() - start < idle_s:
            done = pool.run("torch", handler, {"epochs": epochs}, folder / "torch")
            assert done.ok, done.log_tail
            jobs, threads = jobs + 1, done.result["threads"]
        wall = time.perf_counter() - start
        used = {b: cpu_s(pid) - before[b] for b, pid in others.items()}
        used["orchestrator"] = time.process_time() - me
    return {"wall_s": wall, "cpu_s": used, "torch_jobs": jobs, "torch_threads": threads, "load": load()}


def backendlab(*args: str, env: dict | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "backendlab", *args],
        env={**os.environ, **(env or {})},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def torch_alone(epochs: int, folder: Path) -> float:
    backendlab("train", "--epochs", str(epochs), "--json", str(folder / "train.json"), env={"KERAS_BACKEND": "torch"})
    return json.loads((folder / "train.json").read_text())["train_time_s"]


def torch_in_compare(epochs: int, folder: Path) -> float:
    out = Path(tempfile.mkdtemp(prefix="compare-", dir=folder)) / "out"  # compare writes beside a folder that exists
    backendlab("compare", "--epochs", str(epochs), "--no-floor", "--out", str(out))
    return json.loads((out / "report.json").read_text())["timing"]["train_s"]["torch"]


def train_part(repeats: int, burner_count: int, epochs: int, folder: Path) -> dict:
    """Median torch training seconds alone and in compare, for each of :data:`THREADS`, as the machine is and
    with burners beside it; the two thread settings interleaved, so a change in the load reaches both alike."""
    found = {}
    conditions = {"as is": 0, f"{burner_count} burners": burner_count} if burner_count else {"as is": 0}
    for condition, count in conditions.items():
        with burners(count):
            times = {name: {"alone": [], "in compare": []} for name in THREADS}
            loads = []
            for _ in range(repeats):
                loads.append(load())
                for name, value in THREADS.items():
                    with threads_env(value):
                        times[name]["alone"].append(torch_alone(epochs, folder))
                        times[name]["in compare"].append(torch_in_compare(epochs, folder))
        found[condition] = {
            "median_s": {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()},
            "all_s": times,
            "loads": loads,
        }
    return found


#: How PyTorch alone trains with its own count, its waiting threads spinning or asleep, and with one thread.
WAITS = {
    "own count, waiting threads spin": {"OMP_WAIT_POLICY": "ACTIVE"},
    "own count, waiting threads sleep": {"OMP_WAIT_POLICY": "PASSIVE"},
    "BACKENDLAB_THREADS=1": {"BACKENDLAB_THREADS": "1"},
}


def wait_part(repeats: int, epochs: int, folder: Path) -> dict:
    """Median torch training seconds alone for each of :data:`WAITS`, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in WAITS}
    loads = []
    for _ in range(repeats):
        loads.append(load())
        for name, env in WAITS.items():
            with threads_env(env.get("BACKENDLAB_THREADS")):
                backendlab(
                    "train", "--epochs", str(epochs), "--json", str(folder / "train.json"),
                    env={"KERAS_BACKEND": "torch", **env},
                )  # fmt: skip
            times[name].append(json.loads((folder / "train.json").read_text())["train_time_s"])
    return {"median_s": {n: statistics.median(t) for n, t in times.items()}, "all_s": times, "loads": loads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="idle,train", help="idle, train, wait (default: idle,train)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burners", type=int, default=2, help="CPU burners in the train part (0: none)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="how long torch trains in the idle part")
    parser.add_argument("--epochs", type=int, default=10, help="the seed MLP's epochs per training (default 10)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    if args.json:
        check_writable(args.json, "--json")
    parts = args.parts.split(",")
    found: dict = {"cores": os.cpu_count(), "epochs": args.epochs}
    with tempfile.TemporaryDirectory(prefix="backendlab-threads-") as tmp:
        if "idle" in parts:
            for name, value in THREADS.items():
                with threads_env(value):
                    found.setdefault("idle", {})[name] = idle = idle_part(args.idle_s, args.epochs, Path(tmp))
                print(f"{name}: idle workers while torch trained {idle['wall_s']:.1f}s ({idle['load']}), CPU s:")
                for who, seconds in idle["cpu_s"].items():
                    print(f"  {who:<12} {seconds:6.3f}")
                print(f"  torch ran {idle['torch_threads']} threads, {idle['torch_jobs']} jobs")
        if "wait" in parts:
            found["wait"] = wait = wait_part(args.repeats, args.epochs, Path(tmp))
            for name, seconds in wait["median_s"].items():
                print(f"torch train_time_s alone, {name}: {seconds:.2f}s (all: {wait['all_s'][name]})")
            print(f"  ({', '.join(wait['loads'])})")
        if "train" in parts:
            found["train"] = train_found = train_part(args.repeats, args.burners, args.epochs, Path(tmp))
            for condition, t in train_found.items():
                for name, medians in t["median_s"].items():
                    print(
                        f"torch train_time_s, {condition}, {name}: alone {medians['alone']:.2f}s, "
                        f"in compare {medians['in compare']:.2f}s (median of {args.repeats}; all: {t['all_s'][name]})"
                    )
                print(f"  ({', '.join(t['loads'])})")
    if args.json:
        write_json(args.json, found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
