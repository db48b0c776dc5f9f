"""Every ``bash`` command and ``python`` snippet of the README runs as written, in a fresh folder.

Each block runs in a temporary folder holding a copy of what the docs name (``examples/``,
``tests/fixtures/``, ...), with this virtualenv's ``backendlab``, ``python`` and ``pytest`` on the PATH,
as in a shell where the README's setup line activated ``.venv``. A block that cannot run in a test says
why on the line before it (``<!-- not run: ... -->``; ``tests/unit/test_readme.py`` checks the reasons).
The docs' own blocks: ``test_docs_commands.py`` (a file of its own, so that xdist runs the two apart).
"""

from __future__ import annotations

import pytest
from doc_blocks import README, run_block, runnable

BLOCKS = runnable([README])


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_the_readme_block_runs_as_written(block, tmp_path):
    done = run_block(block, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (
        f"{block.name} exited {done.returncode}:\n{block.body}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
