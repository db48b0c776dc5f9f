"""tune's benchmark: the reference MLP at batch 256 and the CNN at batch 32, every backend.

For each backend: the native loop, Keras's default settings, and each setting of the grid
(jit_compile, steps_per_execution, fit or TrainStep, threads, float32 or mixed_bfloat16),
each judged against the default's training; the best that keeps parity is compared with the
native loop, and a per-step profile shows where the time goes.

    python benchmarks/tune.py --out tune-bench

About 10 minutes on a 2-core CPU machine (torch.compile's first steps are most of it).
"""

import argparse
import sys

from rich.console import Console

from backendlab.tune.cli import tune_with_bars
from backendlab.tune.report import notes, rich_table
from backendlab.tune.run import TuneOptions

CELLS = (("mlp", 256), ("cnn", 32))

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tune-bench")
    parser.add_argument("--backends", default=None, help="comma-separated (default: every installed one)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    chosen = {"backends": tuple(args.backends.split(","))} if args.backends else {}
    options = TuneOptions(cells=CELLS, repeats=args.repeats, samples_per_repeat=4096, **chosen)
    report = tune_with_bars(options, args.out, console=Console(stderr=True))
    console = Console(width=160)
    console.print(rich_table(report))
    for line in notes(report):
        console.print(line, markup=False, highlight=False)
    sys.exit(1 if report.failures else 0)
