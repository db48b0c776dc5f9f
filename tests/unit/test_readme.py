"""The README and docs/ as a newcomer reads them: every ``backendlab`` command in them is one the command
accepts, and every block a test does not run says why.

Each command in a ``bash`` or ``console`` block is parsed by backendlab's own parser (a flag that was
renamed or dropped fails here), every ``file.py:function`` they name exists, and the test file
docs/layers.md tells users to copy is the one in ``examples/``, word for word. The ``bash`` and
``python`` blocks themselves run in ``tests/cross/test_readme_commands.py`` and
``tests/cross/test_docs_commands.py``; one that cannot run there carries ``<!-- not run: why -->``
on the line before it, and the tests below hold each such marker to a reason and to a block it skips.
"""

from __future__ import annotations

import ast
import re
import shlex

import pytest
from doc_blocks import DOCS, KINDS, README, ROOT, RUN_KINDS, blocks, markers, runnable

from backendlab.cli import build_parser

PAGES = [README, *DOCS]
BLOCKS = [b for page in PAGES for b in blocks(page)]
TEXT = "\n".join(page.read_text() for page in PAGES)


def _commands() -> list[str]:
    """Every ``backendlab ...`` line of the shell blocks, joined across ``\\``, without prompts and comments."""
    found = []
    for block in BLOCKS:
        if block.kind not in ("bash", "console"):
            continue
        for line in block.body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if block.kind == "console":
                if not line.startswith("$ "):
                    continue  # output, not a command
                line = line[2:]
            line = line.split(" #")[0].strip()
            for part in line.split("&&"):
                words = shlex.split(part)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words = words[1:]  # KERAS_BACKEND=jax and the like
                if words and words[0].endswith("backendlab"):
                    found.append(shlex.join(words[1:]))
    return found


COMMANDS = _commands()


def test_the_readme_shows_every_command_and_runs_one_of_each():
    run = " ".join(b.body for b in runnable([README]))
    shown = {c.split()[0] for c in COMMANDS if c}
    for command in ("compare", "train", "bench", "tune", "export", "check-layer"):
        assert command in shown and f"backendlab {command}" in run, command


def test_the_setup_line_activates_the_virtualenv_and_installs_the_tests_and_keras_hub():
    setup = blocks(README)[0]
    assert setup.kind == "bash" and setup.not_run
    assert "source .venv/bin/activate" in setup.body
    assert re.search(r'-e "\.\[[^"]*\btest\b[^"]*\]"', setup.body), setup.body
    assert setup.body.index("[all,") < setup.body.index("--no-deps keras-hub"), "keras-hub goes in last"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_backendlab_command_in_the_docs_parses(command):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command))
    except SystemExit as exc:  # argparse's way to say the command line is wrong
        pytest.fail(f"`backendlab {command}` does not parse (exit {exc.code})")


@pytest.mark.parametrize("spec", sorted(set(re.findall(r"((?:tests|examples)/[\w/]+\.py):(\w+)", TEXT))))
def test_every_user_file_the_docs_name_has_that_function(spec):
    path, name = spec
    tree = ast.parse((ROOT / path).read_text())
    assert name in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, f"{path} has no {name}()"


def test_the_test_file_to_copy_is_examples_test_my_layer_word_for_word():
    snippets = [b.body for b in BLOCKS if b.kind == "python" and "def test_" in b.body and "backends_agree" in b.body]
    assert snippets == [(ROOT / "examples" / "test_my_layer.py").read_text()]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_block_that_is_not_run_says_why(page):
    for block in blocks(page):
        assert block.kind in KINDS, f"{block.name}: a ```{block.kind} block: use one of {', '.join(KINDS)}"
        if block.not_run is not None:
            assert block.kind in RUN_KINDS, f"{block.name}: 'not run' on a {block.kind} block, which never runs"
            assert len(block.not_run.split()) >= 3, f"{block.name}: 'not run' needs a reason: {block.not_run!r}"
    for line, after in markers(page):
        assert after.startswith("```"), f"{page.name}:{line}: a 'not run' marker must sit just before a block"


def test_the_marker_rule_finds_a_missing_reason(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- not run: -->\n```bash\nnox -s tests\n```\n\n```python\nprint(1)\n```\n")
    first, second = blocks(page)
    assert (first.not_run, first.runs) == ("", False)
    assert (second.not_run, second.runs) == (None, True)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file(page):
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text())
    missing = [link for link in links if not (page.parent / link).exists()]
    assert not missing, f"{page.name} links to files that do not exist: {missing}"
