"""The fenced blocks of README.md and docs/*.md, as the docs-command tests read and run them.

Every ``bash`` and ``python`` block is run as written (``tests/cross/test_readme_commands.py`` and
``tests/cross/test_docs_commands.py``), unless the line just before it is
``<!-- not run: why -->`` with the reason a test cannot run it (an install, the test suite itself, a
command that takes minutes); ``tests/unit/test_readme.py`` holds every such marker to a reason.
Blocks of other kinds (``console``: a command with what it printed, ``json``, ``text``) show output and
are not run; their ``backendlab`` commands are still parsed by the unit test. Imports no framework.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RUN_KINDS = ("bash", "python")
KINDS = (*RUN_KINDS, "console", "json", "text")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:(.*?)-->\s*$")  # a line of its own
FENCE = re.compile(r"^```(\S*)\s*$")
#: What the blocks name besides backendlab itself, copied into the folder each block runs in.
COPIED = ("examples", "tests/fixtures", "benchmarks", "constraints.txt")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, counted from 1
    kind: str
    body: str
    not_run: str | None  # the marker's reason ("" for a marker without one); None: no marker

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.kind in RUN_KINDS and self.not_run is None


def blocks(path: Path) -> list[Block]:
    """Every fenced block of one markdown file, with the ``not run`` marker on the line before it."""
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = lines[i - 1] if i else ""
        marker = NOT_RUN.search(before)
        body = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(path, i + 1, opening.group(1), body, marker.group(1).strip() if marker else None))
        i = end + 1
    return found


def markers(path: Path) -> list[tuple[int, str]]:
    """``(line, the line after it)`` for every ``not run`` marker of a file."""
    lines = path.read_text().splitlines() + [""]
    return [(n + 1, lines[n + 1]) for n, line in enumerate(lines[:-1]) if NOT_RUN.search(line)]


def runnable(paths) -> list[Block]:
    return [b for path in paths for b in blocks(path) if b.runs]


def run_block(block: Block, folder: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a block as a user would, in ``folder`` (a copy of what the docs name), with this virtualenv's
    ``backendlab``, ``python`` and ``pytest`` first on the PATH and no ``KERAS_BACKEND`` set."""
    for name in COPIED:
        source, target = ROOT / name, folder / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, target)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if block.kind == "python":
        (folder / "snippet.py").write_text(block.body)
        args = [sys.executable, "snippet.py"]
    else:
        args = ["bash", "-euo", "pipefail", "-c", block.body]
    return subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
