"""compare's report files when numbers are NaN, inf or missing: every view is drawn, report.json is strict.

A synthetic CompareReport built from the dataclasses, so no framework and no process.
"""

from __future__ import annotations

import io

import pytest
from helpers import strict_json
from rich.console import Console

from backendlab.compare.diff import Diff
from backendlab.compare.report import loss_curves_png, markdown, terminal_table, write_outputs
from backendlab.compare.results import BackendReport, CompareOptions, CompareReport, Criterion
from backendlab.results import NonFinite, write_json

NAN, INF = float("nan"), float("inf")
PNG = b"\x89PNG\r\n\x1a\n"


def _report(reference_losses=(0.7, 0.6, 0.5, 0.4)) -> CompareReport:
    went = NonFinite(2, "loss", "loss", "nan")
    backends = {
        "jax": BackendReport(
            "jax", "ok", "agree", initial_checksum="abc", train_time_s=1.5, step_losses=list(reference_losses),
            history={"loss": [0.6, 0.4]}, test={"loss": 0.45, "accuracy": 0.9},
        ),
        "tensorflow": BackendReport(
            "tensorflow", "nonfinite", "diverge", message=went.message, initial_checksum="abc", train_time_s=0.2,
            step_losses=[0.7, NAN], nonfinite_step=2, nonfinite=went,
        ),
        "torch": BackendReport(
            "torch", "ok", "diverge", message="outside rtol=0.001, atol=0.001 in step_losses",
            initial_checksum="abc", train_time_s=NAN, step_losses=[0.7, INF, -INF, None],
            history={"loss": [INF, None]}, test={"loss": INF, "accuracy": None, "auc": NAN},
            differences={"step_losses": Diff(INF, NAN, False, 4), "epoch_metrics": Diff(None, None, False, 2)},
            first_divergent_step=2,
        ),
    }  # fmt: skip
    return CompareReport(
        verdict="failed",
        reference="jax",
        settings={**CompareOptions().settings(), "data": "breast_cancer", "backends": list(backends)},
        criterion=Criterion("exact", 1e-3, 1e-3, 0.1, "float32", "float32"),
        stochastic_layers=[],
        notes=[],
        keras_version="3.15.1",
        backends=backends,
        portability={
            "jax": {"torch": {"status": "agree", "max_abs": NAN}, "numpy": {"status": "diverge", "max_abs": None}}
        },
        numpy_reference={"jax": {"status": "agree", "max_abs": INF}, "torch": {"status": "agree", "max_abs": None}},
    )  # fmt: skip


def _table_text(report) -> str:
    console = Console(width=220, record=True, file=io.StringIO())
    console.print(terminal_table(report))
    return console.export_text()


def test_markdown_shows_nan_and_inf_as_such_and_missing_numbers_as_a_dash():
    md = markdown(_report())
    assert md.startswith("# backendlab compare: FAILED")
    assert (
        "| torch | ok | diverge | `abc` | - | loss=inf, accuracy=-, auc=nan | inf / nan | - / - | - | - | - | - |"
    ) in md
    assert "| tensorflow | nonfinite | diverge | `abc` | 0.20s |  | - | - | - | - | - | - |" in md
    assert "- **tensorflow**: training loss became nan at step 2" in md
    assert "| jax | agree (nan) | diverge (-) |" in md
    assert "- jax: agree (largest absolute difference inf)" in md


def test_terminal_table_draws_every_backend():
    text = _table_text(_report())
    assert "nonfinite" in text and "inf / nan" in text and "verdict: FAILED" in text


@pytest.mark.parametrize("reference_losses", [(0.7, 0.6, 0.5, 0.4), (NAN, NAN), (INF, 0.5)])
def test_loss_curves_are_drawn_whatever_the_reference_went_to(reference_losses):
    assert loss_curves_png(_report(reference_losses))[:8] == PNG


def test_every_report_file_is_written_and_report_json_is_strict(tmp_path):
    report = _report()
    write_json(tmp_path / "report.json", report)
    write_outputs(report, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss_curves.png", "report.json", "report.md"]
    data = strict_json((tmp_path / "report.json").read_text())
    torch = data["backends"]["torch"]
    assert torch["step_losses"] == [0.7, None, None, None] and torch["train_time_s"] is None
    assert torch["test"] == {"loss": None, "accuracy": None, "auc": None}
    assert data["backends"]["tensorflow"]["nonfinite"] == {
        "step": 2,
        "quantity": "loss",
        "name": "loss",
        "value": "nan",
    }


def test_a_report_read_back_from_json_draws_like_the_original(tmp_path):
    write_json(tmp_path / "report.json", _report())
    again = CompareReport.from_dict(strict_json((tmp_path / "report.json").read_text()))
    assert again.backends["tensorflow"].nonfinite == NonFinite(2, "loss", "loss", "nan")
    assert again.backends["torch"].differences["step_losses"] == Diff(None, None, False, 4)
    md = markdown(again)
    assert "| torch | ok | diverge | `abc` | - | loss=-, accuracy=-, auc=- | - / - | - / - |" in md
    assert "nonfinite" in _table_text(again)
    assert loss_curves_png(again)[:8] == PNG
