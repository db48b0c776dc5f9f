"""Every ``bash`` command and ``python`` snippet of ``docs/*.md`` runs as written, in a fresh folder.

As ``test_readme_commands.py`` does for the README (see there how a block runs, and how one that
cannot run in a test says why).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from doc_blocks import DOCS, run_block, runnable
from helpers import QUIET_ENV

from backendlab.backends import BACKEND_NAMES

BLOCKS = runnable(DOCS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_the_docs_block_runs_as_written(block, tmp_path):
    done = run_block(block, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (
        f"{block.name} exited {done.returncode}:\n{block.body}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )


def test_with_keras_imported_first_and_no_keras_backend_backendlab_runs_on_keras_s_choice(tmp_path):
    """A snippet that imports Keras before backendlab, KERAS_BACKEND unset: Keras took its backend from
    keras.json, and TrainStep runs on it (it once took the first installed backend, and failed in jax.jit)."""
    chosen = BACKEND_NAMES[-1]  # not the first installed, which backendlab takes when Keras has not chosen
    (tmp_path / "keras.json").write_text(json.dumps({"backend": chosen}))
    code = (
        "import keras, numpy as np, backendlab\n"
        "model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])\n"
        "step = backendlab.TrainStep(model, 'mse', 'sgd')\n"
        "logs = step(np.ones((4, 3), 'float32'), np.ones((4, 1), 'float32'))\n"
        "print(keras.backend.backend(), backendlab.backend_info().backend, float(logs['loss']) > 0)"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(QUIET_ENV, KERAS_HOME=str(tmp_path))  # the folder Keras reads keras.json from
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [chosen, chosen, "True"]
