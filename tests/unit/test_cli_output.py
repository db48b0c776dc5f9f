"""What the command line prints and writes, beside its numbers: help, version, words for counts, tables that
are not cut, result files anyone may read, and result folders that never mix two runs."""

from __future__ import annotations

import dataclasses
import io
import os
import stat
from types import SimpleNamespace

import pytest
from rich.console import Console

from backendlab import __version__
from backendlab.bench import report as bench_report
from backendlab.cli import SUBCOMMANDS, build_parser, main, summary_order
from backendlab.compare.results import stochastic_marks
from backendlab.compare.verdict import _notes
from backendlab.results import unused_folder, write_json
from backendlab.text import counted_names, plural
from unit.test_units import synthetic_bench


def test_version_is_printed_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"backendlab {__version__}\n"


def test_bare_backendlab_prints_its_commands_and_runs_nothing(capsys):
    assert main([]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("usage: backendlab [-h] [--version] COMMAND ...")
    assert all(f"    {name}" in printed.out for name in SUBCOMMANDS)
    assert printed.err == ""


def test_options_without_a_command_are_one_line_naming_the_command_to_use(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--epochs", "2"])
    assert done.value.code == 2
    assert capsys.readouterr().err == (
        "backendlab: error: name a command before its options, e.g. backendlab train --epochs 2 "
        "(commands: info, train, compare, bench, tune, export, check-layer)\n"
    )


def test_no_help_text_shows_rst_markup():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # every subcommand's own --help
    for text in [parser.format_help(), *(p.format_help() for p in commands.values())]:
        assert "``" not in text and ":func:" not in text


def test_counts_take_the_singular_for_one():
    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert plural(1, "process", "processes") == "1 process" and plural(3, "process", "processes") == "3 processes"


def test_a_stochastic_layer_name_met_twice_is_listed_once_with_its_count():
    assert counted_names(["embeddings_dropout", "dropout", "ffn_dropout", "dropout", "ffn_dropout"]) == (
        "embeddings_dropout, dropout (x2), ffn_dropout (x2)"
    )
    # bert's two blocks each hold a layer named "dropout": the note marks each name once, by how it drew.
    opts = SimpleNamespace(stat_rtol=0.05, run=SimpleNamespace(random="backend", disable_stochastic=False))
    marks = stochastic_marks(["embeddings_dropout", "dropout", "dropout"], [], "backend", False)
    (note,) = _notes(opts, marks, "statistical", {}, False)
    assert note.startswith(
        "stochastic layers (embeddings_dropout, dropout) draw from each backend's own random generator "
        "(--random backend)"
    )


def test_the_train_summary_puts_the_loss_first_whatever_order_the_backend_logged():
    assert summary_order({"accuracy": 1, "loss": 2}) == ["loss", "accuracy"]
    assert summary_order({"loss": 2, "auc": 0, "accuracy": 1}) == ["loss", "accuracy", "auc"]


def test_result_files_are_readable_as_the_umask_allows_not_0600(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_json(tmp_path / "report.json", {"verdict": "AGREE"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left beside it


def test_a_result_folder_in_use_is_kept_and_the_next_free_number_taken(tmp_path):
    out = tmp_path / "bench-out"
    assert unused_folder(out) == out  # missing
    out.mkdir()
    assert unused_folder(out) == out  # empty
    (out / "bench.json").write_text("{}")
    assert unused_folder(out) == tmp_path / "bench-out-2"
    (tmp_path / "bench-out-2").mkdir()
    (tmp_path / "bench-out-2" / "bench.md").write_text("#")
    assert unused_folder(out) == tmp_path / "bench-out-3"


def test_bench_help_says_what_happens_to_a_folder_in_use():
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["bench"].format_help().split())
    assert "if DIR holds files already, they are kept and the results go to DIR-2, DIR-3, ..." in help_text


def _rendered(table, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width).print(table)
    return buffer.getvalue()


def test_the_bench_table_is_not_cut_when_output_is_not_a_terminal():
    from backendlab.cli import out

    assert out.width == 160  # pytest captures stdout: not a terminal
    text = _rendered(bench_report.rich_table(synthetic_bench()), out.width)
    assert "…" not in text and "native" in text and "samples/s" in text


def test_of_peak_above_100_percent_is_marked_and_explained():
    report = synthetic_bench()
    assert bench_report.peak_note(report) is None  # every row under the peak: nothing to explain
    fast = dataclasses.replace(report.rows[2], fraction_of_peak=1.548)
    report = dataclasses.replace(report, rows=[*report.rows[:2], fast, *report.rows[3:]])
    note = (
        "* of peak above 100% (up to 154.8%): the peak was measured low this run (160 GFLOP/s, the best matmul "
        "of the run); those rows ran faster than it, not faster than the machine"
    )
    assert bench_report.notes(report)[-1] == note
    assert "154.8%*" in _rendered(bench_report.rich_table(report), 160)
    markdown = bench_report.markdown_report(report)
    assert "| 154.8%* |" in markdown and f"\n{note}.\n" in markdown


def test_bench_rows_that_differ_only_in_their_randomness_are_told_apart_in_the_terminal():
    report = synthetic_bench()
    portable = dataclasses.replace(report.rows[0], random="portable")
    report = dataclasses.replace(report, rows=[report.rows[0], portable])
    lines = [line for line in _rendered(bench_report.rich_table(report), 160).splitlines() if " keras " in line]
    assert len(lines) == 2
    assert "spe=1 random=portable" in lines[1] and "random" not in lines[0] and "spe=1" in lines[0]
