"""backendlab where Keras users write models: a Jupyter notebook, run by a real kernel, and ``python -c``.

The model, its data and a layer are defined in the notebook's cells (in ``__main__`` for
``python -c``), compared on two backends and checked for parity; the report shows itself as HTML.
Each run starts its own workers (a kernel cannot share the test session's pool), so both are kept
to the least that shows it: two backends, one epoch of 48 rows, no floor, no portability.
"""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
from helpers import QUIET_ENV, ROOT, run_python

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SETUP = """\
import os
os.environ["KERAS_BACKEND"] = "jax"  # this kernel's own Keras, for the layer below; the workers choose theirs
import numpy as np
import keras
import backendlab
"""

DEFINE = """\
def build():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )

def halves():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    return (x[:48], y[:48]), (x[48:], y[48:])
"""

COMPARE = """\
pool = backendlab.shared_pool()  # warm workers, kept for the check below
report = backendlab.compare(model=build, data=halves, epochs=1, batch_size=16, backends=["jax", "torch"],
                            floor=False, portability=False, out={out!r}, pool=pool)
assert report.verdict == "agree", report
print("verdict:", report.verdict)
"""

LAYER = """\
parity = backendlab.testing.assert_backends_agree(lambda: keras.layers.Dense(3, activation="tanh"),
                                                  np.ones((2, 4), "float32"), backends=["jax", "torch"], saving=False)
print(parity.summary())
"""

SHOW = "report"


def _outputs(cell) -> dict[str, str]:
    """A cell's outputs by kind: its printed text, and each rich output by mime type."""
    found: dict[str, str] = {"stdout": "", "stderr": ""}
    for output in cell.outputs:
        if output.output_type == "stream":
            found[output.name] += output.text
        elif output.output_type in ("display_data", "execute_result"):
            for mime, value in output.data.items():
                found[mime] = value if isinstance(value, str) else json.dumps(value)
        elif output.output_type == "error":
            raise AssertionError("\n".join(output.traceback))
    return found


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The notebook, its cells run in order by a Jupyter kernel on this Python, with backendlab importable."""
    folder = tmp_path_factory.mktemp("notebook")
    cells = [SETUP, DEFINE, COMPARE.format(out=str(folder / "compare-out")), LAYER, SHOW]
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = {**os.environ, **QUIET_ENV, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # ipykernel's own "python3" kernel runs the interpreter that runs the tests.
    client = nbclient.NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute(env=env)
    nbformat.write(book, folder / "api.ipynb")  # what it showed, for whoever looks at a failure
    return book


def test_a_model_and_data_defined_in_cells_compare_on_two_backends(notebook):
    printed = _outputs(notebook.cells[2])
    assert "verdict: agree" in printed["stdout"]
    # The progress bars are drawn in the cell, in an ipywidgets Output, as rich does in Jupyter.
    assert "application/vnd.jupyter.widget-view+json" in printed, sorted(printed)
    widgets = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
    drawn = json.dumps([w["state"].get("outputs") for w in widgets if w["model_name"] == "OutputModel"])
    assert re.search(r"(jax|torch)( import)?\s*</span>", drawn) and "\\u2501" in drawn, drawn[:1000]  # a label, a bar


def test_a_layer_from_a_lambda_agrees_on_two_backends(notebook):
    assert re.search(r"^all \d+ checks agree across jax, torch$", _outputs(notebook.cells[3])["stdout"], re.M)


def test_the_report_shows_its_table_and_loss_curves_as_html(notebook):
    shown = _outputs(notebook.cells[4])
    html = shown["text/html"]
    assert "ran: optimizer SGD" in html and "verdict: AGREE" in html
    rows = re.findall(r"│ (jax|torch)\s+│ ok\s+│ <span[^>]*>agree</span>", html)
    assert rows == ["jax", "torch"], html[:2000]
    png = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert png and base64.b64decode(png.group(1)).startswith(b"\x89PNG")
    assert "verdict: AGREE" in shown["text/plain"]  # its repr, where HTML is not shown


def test_the_same_calls_from_python_c(tmp_path):
    code = "\n".join([SETUP, DEFINE, COMPARE.format(out=str(tmp_path / "compare-out")), LAYER, "print(repr(report))"])
    done = run_python(code, env={"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verdict: agree" in done.stdout and re.search(r"^all \d+ checks agree across jax, torch$", done.stdout, re.M)
    assert re.search(r"^│ torch\s+│ ok\s+│ agree", done.stdout, re.M), done.stdout
