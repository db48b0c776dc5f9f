"""The same seed gives the same training on every backend: portable starting weights in plain `train`."""

from __future__ import annotations

import re

from helpers import ROOT, run_python


def test_the_docs_portable_init_snippet_runs_as_written(backend):
    training = (ROOT / "docs" / "training.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", training, re.S) if "portable_init" in b)
    done = run_python(block, env={"KERAS_BACKEND": backend})
    assert done.returncode == 0, done.stderr[-2000:]
    checksum, note = done.stdout.split()
    assert len(checksum) == 16 and note == "None"
