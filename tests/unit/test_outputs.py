"""Where results go, and what is resumed from, fail before any work with one line and exit 2.

Tests run as root here, which may write anywhere chmod forbids; a path under a regular
file cannot be written by anyone, so that is the unwritable place these tests use.
"""

from __future__ import annotations

import pytest
from helpers import holds_only, run_cli

from backendlab.errors import UsageError
from backendlab.results import check_writable


def test_check_writable_accepts_new_paths_in_writable_folders_and_creates_nothing(tmp_path):
    check_writable(tmp_path / "deep" / "er" / "m.keras", "--save")
    check_writable(tmp_path / "out", "--out", folder=True)
    check_writable(tmp_path, "--out", folder=True)  # an existing folder is reused
    check_writable("relative.json", "--json")
    holds_only(tmp_path)


def test_check_writable_names_the_file_in_the_way(a_file):
    with pytest.raises(UsageError) as err:
        check_writable(a_file / "deep" / "out", "--out", folder=True)
    assert str(err.value) == f"--out '{a_file}/deep/out' cannot be written: '{a_file}' is a file, not a folder"


def test_compare_json_under_a_file_exits_2_and_writes_nothing(backend, a_file, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("compare", "--backends", backend, "--out", str(out), "--json", f"{a_file}/r.json")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"backendlab: error: --json '{a_file}/r.json' cannot be written: '{a_file}' is a file, not a folder"
    )
    holds_only(tmp_path, "notes.txt")


@pytest.mark.parametrize(
    "flag, name, reason",
    [
        ("--save", "sub/m.keras", "'{file}' is a file, not a folder"),
        ("--json", "sub/r.json", "'{file}' is a file, not a folder"),
    ],
)
def test_train_output_under_a_file_exits_2_before_training(flag, name, reason, a_file):
    target = f"{a_file}/{name}"
    proc = run_cli("train", flag, target)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"backendlab: error: {flag} '{target}' cannot be written: {reason.format(file=a_file)}"
    )
    assert "Traceback" not in proc.stderr and proc.stdout == ""  # no result table: nothing trained
    holds_only(a_file.parent, "notes.txt")


@pytest.mark.parametrize("flag, name", [("--save", "m.keras"), ("--json", "r.json")])
def test_train_output_that_is_a_folder_exits_2(flag, name, tmp_path):
    (tmp_path / name).mkdir()
    proc = run_cli("train", flag, str(tmp_path / name))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"backendlab: error: {flag} '{tmp_path / name}' cannot be written: it is a folder"
    holds_only(tmp_path, name)
