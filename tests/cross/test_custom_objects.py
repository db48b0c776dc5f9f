"""A model compiled with the user's own plain functions (not registered with Keras): every backend loads every
saved ``.keras`` file with them, and a file that truly cannot load is the saved models' verdict, not training's."""

from __future__ import annotations

from backendlab.backends import BACKEND_NAMES
from backendlab.compare import compare

FIXTURE = "tests/fixtures/custom_functions.py"


def test_an_unregistered_loss_and_metric_in_the_model_file_load_everywhere(pool, tmp_path):
    report = compare(model=f"{FIXTURE}:focal_mlp", epochs=1, out=str(tmp_path), pool=pool)
    assert report.verdict == "agree", {b: r.message for b, r in report.backends.items()}
    for saver in BACKEND_NAMES:
        row = report.portability[saver]
        assert set(row) == {*BACKEND_NAMES, "numpy"}
        for loader, cell in row.items():
            assert cell["status"] == "agree" and cell["max_abs"] <= 1e-5, (saver, loader, cell)
    assert (report.portability_verdict, report.exit_code) == ("agree", 0)


def test_a_file_that_cannot_load_says_so_once_and_training_still_agrees(pool, tmp_path):
    backend = BACKEND_NAMES[-1]
    report = compare(
        model=f"{FIXTURE}:focal_mlp_inner_metric", backends=[backend], epochs=1, out=str(tmp_path), pool=pool
    )
    assert report.verdict == "agree" and report.backends[backend].status == "ok"
    assert (report.portability_verdict, report.exit_code) == ("could not load", 1)
    cells = report.portability[backend]
    assert {c["status"] for c in cells.values()} == {"could not load"} and set(cells) == {backend, "numpy"}
    assert {c["message"] for c in cells.values()} == {
        "TypeError: Could not locate function 'inner_hit_rate'. Make sure custom classes and functions are "
        "decorated with `@keras.saving.register_keras_serializable()`. If they are already decorated, make sure "
        "they are all imported so that the decorator is run before trying to load them."
    }
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# backendlab compare: AGREE") and md.count("Could not locate function") == 1
    assert f"| {backend} | could not load [1] | could not load [1] |" in md
