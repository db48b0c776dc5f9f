"""The README as a newcomer reads it: every ``backendlab`` command in it is one the command accepts.

Each command in a ``bash`` or ``console`` block is parsed by backendlab's own parser (a flag that
was renamed or dropped fails here), every ``file.py:function`` it names exists, and the test file
it tells users to copy is the one in ``examples/``, word for word. The snippets that compute
something run in their own tests (``test_same_seed``, ``test_loop``, ``test_parity_helper``).
"""

from __future__ import annotations

import ast
import re
import shlex

import pytest
from helpers import ROOT

from backendlab.cli import build_parser

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(bash|console|python)\n(.*?)```", README, re.S)


def _commands() -> list[str]:
    """Every ``backendlab ...`` line of the shell blocks, joined across ``\\``, without prompts and comments."""
    found = []
    for kind, body in BLOCKS:
        if kind == "python":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if kind == "console":
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


def test_the_readme_has_the_commands_it_documents():
    kinds = {c.split()[0] for c in COMMANDS if c}
    assert {"compare", "train", "bench", "tune", "export", "check-layer"} <= kinds, kinds


@pytest.mark.parametrize("command", COMMANDS)
def test_every_backendlab_command_in_the_readme_parses(command):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command))
    except SystemExit as exc:  # argparse's way to say the command line is wrong
        pytest.fail(f"`backendlab {command}` does not parse (exit {exc.code})")


@pytest.mark.parametrize("spec", sorted(set(re.findall(r"((?:tests|examples)/[\w/]+\.py):(\w+)", README))))
def test_every_user_file_the_readme_names_has_that_function(spec):
    path, name = spec
    tree = ast.parse((ROOT / path).read_text())
    assert name in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, f"{path} has no {name}()"


def test_the_test_file_to_copy_is_examples_test_my_layer_word_for_word():
    snippets = [body for kind, body in BLOCKS if kind == "python" and "def test_" in body and "backends_agree" in body]
    assert snippets == [(ROOT / "examples" / "test_my_layer.py").read_text()]
