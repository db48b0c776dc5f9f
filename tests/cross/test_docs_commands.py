"""Every ``bash`` command and ``python`` snippet of ``docs/*.md`` runs as written, in a fresh folder.

As ``test_readme_commands.py`` does for the README (see there how a block runs, and how one that
cannot run in a test says why).
"""

from __future__ import annotations

import pytest
from doc_blocks import DOCS, run_block, runnable

BLOCKS = runnable(DOCS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_the_docs_block_runs_as_written(block, tmp_path):
    done = run_block(block, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (
        f"{block.name} exited {done.returncode}:\n{block.body}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
