"""The quick preset: mlp and cnn, batch 256, fit and predict, every backend, Keras and native.

Under 3 minutes on a 2-core CPU machine; ``nox -s bench`` runs it.

    python benchmarks/quick.py --out bench-out

Any ``backendlab bench`` option may follow, e.g. ``--backends jax,torch``.
"""

import sys

from backendlab.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "--preset", "quick", *sys.argv[1:]]))
