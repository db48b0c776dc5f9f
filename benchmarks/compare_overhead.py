"""What ``backendlab compare`` costs beyond the work it cannot avoid: importing each framework once, and training.

In one run, on this machine:

1. each backend's bare ``import keras`` (``KERAS_BACKEND`` set), in a fresh interpreter, timed inside it
   with ``time.perf_counter``: one warm-up (the file cache), then the median of ``--repeats``;
2. ``compare`` on the seed example, through its Python API with a pool of its own (so every
   worker imports its framework, as on the command line): the median wall time of ``--repeats``,
   and each backend's training time as its worker measured it;
3. the ratio of compare's wall time to the sum of the imports and the trainings. The goal is 1.3 or less.

    python benchmarks/compare_overhead.py                  # the seed example, 3 repeats
    python benchmarks/compare_overhead.py --json overhead.json --repeats 5

Nothing is asserted: the numbers are printed, and with ``--json`` written (atomically).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from backendlab.backends import installed_backends
from backendlab.compare import compare
from backendlab.results import check_writable, write_json

IMPORT = "import time; t = time.perf_counter(); import keras; print(time.perf_counter() - t)"


@dataclass
class Overhead:
    """One benchmark run's numbers, in seconds."""

    backends: list[str]
    repeats: int
    epochs: int
    import_s: dict[str, float]  # median bare `import keras` per backend
    train_s: dict[str, float]  # median training time per backend, as compare's workers measured it
    compare_wall_s: float  # median wall time of compare
    compare_walls_s: list[float] = field(default_factory=list)  # every repeat
    portability: bool = True

    @property
    def floor_s(self) -> float:
        """What compare cannot avoid: every import once, every training once."""
        return sum(self.import_s.values()) + sum(self.train_s.values())

    @property
    def ratio(self) -> float:
        return self.compare_wall_s / self.floor_s

    def to_dict(self) -> dict:
        return {**self.__dict__, "floor_s": self.floor_s, "ratio": self.ratio}


def bare_import_s(backend: str, repeats: int) -> float:
    """The median time of ``import keras`` on ``backend``, each in a fresh interpreter, after one warm-up."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    times = []
    for i in range(repeats + 1):
        done = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True, env=env, check=True)
        if i:  # the first warms the file cache
            times.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def measure(backends: list[str], repeats: int, epochs: int, portability: bool) -> Overhead:
    imports = {}
    for backend in backends:
        imports[backend] = bare_import_s(backend, repeats)
        print(f"import keras on {backend}: {imports[backend]:.2f}s", file=sys.stderr, flush=True)
    walls, trains = [], {b: [] for b in backends}
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="backendlab-overhead-") as out:
            start = time.perf_counter()
            report = compare(backends=backends, epochs=epochs, portability=portability, out=out)
            walls.append(time.perf_counter() - start)
        if report.verdict != "agree":
            raise SystemExit(f"compare did not agree ({report.verdict}): the timing would not be of a normal run")
        for backend in backends:
            trains[backend].append(report.backends[backend].train_time_s)
        print(f"compare {i + 1}/{repeats}: {walls[-1]:.1f}s", file=sys.stderr, flush=True)
    return Overhead(
        backends=backends,
        repeats=repeats,
        epochs=epochs,
        import_s=imports,
        train_s={b: statistics.median(t) for b, t in trains.items()},
        compare_wall_s=statistics.median(walls),
        compare_walls_s=walls,
        portability=portability,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (default: 3)")
    parser.add_argument("--epochs", type=int, default=10, help="the seed example's epochs (default: 10)")
    parser.add_argument("--no-portability", dest="portability", action="store_false", help="skip loading .keras files")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    if args.json:
        check_writable(args.json, "--json")
    backends = [b.name for b in installed_backends()]
    result = measure(backends, args.repeats, args.epochs, args.portability)
    print(f"bare imports:  {result.import_s and sum(result.import_s.values()):.1f}s  " + _each(result.import_s))
    print(f"training:      {sum(result.train_s.values()):.1f}s  " + _each(result.train_s))
    print(f"compare wall:  {result.compare_wall_s:.1f}s  (median of {args.repeats}: " + _list(result.compare_walls_s))
    print(f"ratio:         {result.ratio:.2f}  (compare wall / (imports + training); goal <= 1.3)")
    if args.json:
        write_json(args.json, result.to_dict())
    return 0


def _each(values: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.2f}s" for k, v in values.items()) + ")"


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}s" for v in values) + ")"


if __name__ == "__main__":
    raise SystemExit(main())
