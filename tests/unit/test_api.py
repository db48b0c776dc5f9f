"""The Python API (``backendlab.compare(...)`` and the other commands as functions) without running one.

Bad arguments raise the line the command line prints, checked against the command line itself;
``backendlab.compare`` stays the function whatever module of its package is imported; every result
draws, in its repr and its HTML, what the command prints (built here by hand, no run needed).
"""

from __future__ import annotations

import base64
import re

import pytest
from helpers import ROOT

import backendlab
from backendlab import api, cli
from backendlab.bench.results import BenchReport, BenchRow, Machine, WorkerFailure
from backendlab.compare.diff import Diff
from backendlab.compare.results import BackendReport, CompareOptions, CompareReport, Criterion
from backendlab.errors import UsageError
from backendlab.export.results import ExportResult
from backendlab.layers.check import Check, ParityReport
from backendlab.results import BackendInfo, TrainResult
from backendlab.runspec import RunSpec

#: (the function, its arguments) and the command line that must fail with the same line.
BAD = [
    ("compare", (), {"epochs": 0}, "compare --epochs 0"),
    ("compare", (), {"batch_size": -3}, "compare --batch-size=-3"),
    ("compare", (), {"loop": "scan"}, "compare --loop scan"),
    ("compare", (), {"rtol": "tight"}, "compare --rtol tight"),
    ("compare", (), {"backends": ["jax", "mxnet"]}, "compare --backends jax,mxnet"),
    ("compare", (), {"model": "nope"}, "compare --model nope"),
    ("compare", (), {"exports": ["onnx", "tflite"]}, "compare --exports onnx,tflite"),
    ("train", (), {"model": "nope"}, "train --model nope"),
    ("train", (), {"init": "zeros"}, "train --init zeros"),
    ("bench", (), {"models": ["mlp", "nope"]}, "bench --models mlp,nope"),
    ("bench", (), {"modes": "train"}, "bench --modes train"),
    ("bench", (), {"repeats": [2, 3]}, "bench --repeats 2,3"),
    ("tune", (), {"threads": "many"}, "tune --threads many"),
    ("tune", (), {"loops": ["fit", "scan"]}, "tune --loops fit,scan"),
    ("export", ("missing.keras",), {"format": "onnx"}, "export missing.keras --format onnx"),
    ("export", ("missing.keras",), {}, "export missing.keras"),
    ("export", ("missing.keras",), {"format": "tflite"}, "export missing.keras --format tflite"),
    ("check_layer", ("layers.py:make",), {}, "check-layer layers.py:make"),
    ("check_layer", ("layers.py:make",), {"input_shape": (4, 0)}, "check-layer layers.py:make --input-shape 4,0"),
    ("check_layer", ("layers.py:make",), {"input_shape": [4], "max_int": 0}, "check-layer x.py:f --input-shape 4 --max-int 0"),  # noqa: E501
]  # fmt: skip


def _cli_error(command: str, capsys) -> str:
    """The line ``backendlab COMMAND`` prints after ``backendlab: error:``, run here (it fails before any import)."""
    capsys.readouterr()
    try:
        code = cli.main(command.split())
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2, command
    line = capsys.readouterr().err.strip()
    assert line.startswith("backendlab: error: "), line
    return line.removeprefix("backendlab: error: ")


@pytest.mark.parametrize(("function", "given", "options", "command"), BAD, ids=[b[3] for b in BAD])
def test_a_bad_argument_raises_the_line_the_command_prints(function, given, options, command, capsys, monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    with pytest.raises(UsageError) as raised:
        getattr(backendlab, function)(*given, **options)
    assert str(raised.value) == _cli_error(command, capsys)


def test_a_value_no_flag_takes_says_so_in_python_terms():
    with pytest.raises(UsageError, match=r"^argument --epochs: must be a positive integer, got 'True'$"):
        backendlab.compare(epochs=True)
    with pytest.raises(UsageError, match=r"^argument portability: must be True or False, got 'no'$"):
        backendlab.compare(portability="no")
    with pytest.raises(UsageError) as raised:
        backendlab.compare(epoch=3)
    assert str(raised.value).startswith("compare() got an unknown argument 'epoch': valid are atol, backends, ")
    assert " epochs, " in str(raised.value) and " portability, " in str(raised.value)


def test_keywords_are_the_flags_with_the_commands_defaults():
    args = api.arguments("compare", {"epochs": 2, "backends": ["jax", "torch"], "portability": False})
    defaults = cli.build_parser().parse_args(["compare"])
    assert (args.epochs, args.backends, args.portability, args.floor) == (2, ["jax", "torch"], False, True)
    assert (args.batch_size, args.rtol, args.out, args.seed) == (defaults.batch_size, None, "compare-out", 0)
    tune = api.arguments("tune", {"native": False, "budget_s": 30, "seed": -1})  # --no-native is native=False
    assert (tune.no_native, tune.budget_s, tune.seed, tune.no_profile) == (True, 30.0, -1, False)
    layer = api.arguments("check-layer", {"factory": lambda: None, "input_shape": (4, 16), "gradients": False})
    assert callable(layer.factory) and layer.input_shape == (4, 16) and layer.no_gradients


def test_compare_stays_the_function_whichever_module_of_its_package_is_imported():
    import backendlab.bench.run
    import backendlab.compare.report
    import backendlab.compare.run
    import backendlab.export.cli
    import backendlab.tune.run  # noqa: F401
    from backendlab import bench, compare, export, tune

    for function, flag in ((compare, "--epochs"), (bench, "--samples"), (tune, "--samples")):
        for same in (function, getattr(backendlab, function.__name__.rsplit(".", 1)[1])):
            flag_name = flag[2:]
            with pytest.raises(UsageError, match=f"^argument {flag}: must be .*positive integers?, got '0'$"):
                same(**{flag_name: 0})
    with pytest.raises(UsageError, match="model file 'missing.keras' does not exist"):
        export("missing.keras", format="onnx")
    assert backendlab.compare.compare is backendlab.compare.run.compare  # the package's own names are kept


def test_all_is_what_the_docs_list():
    docs = (ROOT / "docs" / "api.md").read_text()
    assert {"compare", "train", "bench", "tune", "export", "check_layer", "testing"} <= set(backendlab.__all__)
    assert "run_training" not in backendlab.__all__ and callable(backendlab.run_training)  # kept, lazily
    for name in backendlab.__all__:
        assert f"`{name}" in docs or f"backendlab.{name}" in docs, f"{name} is in __all__ but not in docs/api.md"


# --- results drawn where users look ------------------------------------------------------------


def _compare_report() -> CompareReport:
    backends = {
        "jax": BackendReport("jax", "ok", "agree", initial_checksum="2fd26409", train_time_s=1.5,
                             step_losses=[0.7, 0.6, 0.5], history={"loss": [0.6]}, test={"loss": 0.5}),
        "torch": BackendReport("torch", "ok", "agree", initial_checksum="2fd26409", train_time_s=0.2,
                               step_losses=[0.7, 0.6, 0.5000001], history={"loss": [0.6]}, test={"loss": 0.5},
                               differences={"step_losses": Diff(1e-7, 2e-7, True, 3)}),
    }  # fmt: skip
    return CompareReport(
        verdict="agree",
        reference="jax",
        settings={**CompareOptions().settings(), "data": "breast_cancer", "backends": list(backends)},
        criterion=Criterion("exact", 1e-3, 1e-3, 0.1, "float32", "float32"),
        stochastic_layers=[],
        notes=["a note the CLI prints"],
        keras_version="3.15.1",
        backends=backends,
        portability={},
        numpy_reference={},
    )


def test_a_compare_report_shows_the_table_the_command_prints(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    text = repr(_compare_report())
    assert text.startswith("ran: ") and "\nnote: a note the CLI prints" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│ ")}
    assert set(rows) == {"jax", "torch"} and "agree" in rows["torch"] and "2fd26409" in rows["torch"]
    assert "verdict: AGREE" in text and "[green]" not in text  # the table's markup is drawn, not shown


def test_a_compare_report_in_jupyter_is_the_table_in_colour_and_its_loss_curves():
    html = _compare_report()._repr_html_()
    assert re.search(r'<span style="color: #00[0-9a-f]{4}[^"]*">agree</span>', html), "the verdict in green"
    assert "note: a note the CLI prints" in html and "<script" not in html
    png = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert png and base64.b64decode(png.group(1)).startswith(b"\x89PNG\r\n\x1a\n")


def test_drawing_the_loss_curves_leaves_matplotlib_where_the_user_set_it():
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # as a notebook's inline backend is: anything but Agg
    try:
        _compare_report()._repr_html_()
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)


def test_a_train_result_shows_its_epochs_and_test_metrics():
    result = TrainResult(
        info=BackendInfo("jax", "jax", "0.10.1", "3.15.1", ["cpu:0"], "3.12"),
        config=RunSpec(epochs=2, data="breast_cancer"),
        history={"loss": [0.5, 0.25]},
        step_losses=[0.6, 0.4],
        step_running_loss=[0.6, 0.5],
        test={"accuracy": 0.947},
        train_time_s=1.25,
        num_params=100,
        start_checksum="abc123",
    )
    text = repr(result)
    words = " ".join(text.split())  # rich wraps the title and the caption to the table's width, as the CLI does
    assert "mlp on breast_cancer, backend jax (jax 0.10.1, keras 3.15.1)" in words
    assert re.search(r"│ 2\s+│\s+0\.250000 │", text) and "test: accuracy=0.9470; training took 1.25s" in words
    assert "0.250000" in result._repr_html_()


def test_bench_and_tune_reports_show_their_table_and_failures_in_red():
    machine = Machine("cpu", 2, "linux", "3.12", "3.15.1", {"jax": "0.10.1"}, 12.5)
    row = BenchRow("jax", "keras", "mlp", "fit", 32, "True", 1, None, samples_per_sec=1234.0, ms_per_step=2.5)
    report = BenchReport("quick", machine, [row], failures=[WorkerFailure("torch", "crashed", "killed", "")])
    text = repr(report)
    assert "backendlab bench (quick)" in text and "1,234" in text and "torch: worker crashed: killed" in text
    assert re.search(r'<span style="color: #[0-9a-f]{6}[^"]*">torch: worker crashed</span>', report._repr_html_())


def test_a_parity_report_and_an_export_show_their_lines():
    checks = [
        Check("torch", "jax", "output 0", 1e-7, 2e-7, True),
        Check("torch", "jax", "gradient of w", 0.5, 1, False),
    ]
    report = ParityReport("layers.py:make", "jax", ["jax", "torch"], 1e-5, 1e-6, checks)
    assert repr(report).splitlines() == [
        "ok    torch vs jax, output 0: max abs 1e-07, max rel 2e-07",
        "FAIL  torch vs jax, gradient of w: max abs 0.5, max rel 1 (tolerance rtol=1e-05, atol=1e-06)",
        "1 of 2 checks disagree across jax, torch",
    ]
    done = ExportResult("runs/m.keras", "onnx", "torch", "runs/m.onnx", "digits", 360, "agree", 1.2e-7, "", 1e-4, 0)
    assert repr(done) == (
        "ok: onnx export of m.keras (torch) at 'runs/m.onnx' predicts as the model does on 360 test rows of digits: "
        "max abs difference 1.2e-07 (atol=0.0001, rtol=0)"
    )
    assert done.exit_code == 0 and "ok: onnx export of m.keras" in done._repr_html_()
