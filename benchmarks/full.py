"""The full preset: mlp, cnn, rnn and transformer, batch 32 and 256, fit and predict,
steps_per_execution 1 and 32, every backend, Keras and native; about 5 minutes on a
2-core CPU machine. Its table is benchmarks/RESULTS.md.

    python benchmarks/full.py --out bench-full

Any ``backendlab bench`` option may follow, e.g. ``--repeats 3``.
"""

import sys

from backendlab.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "--preset", "full", *sys.argv[1:]]))
