"""A model that sets the mixed_bfloat16 policy in its factory and compiles itself with Adam, compared on
every backend: bfloat16 arrays are diffed as float32, held to bfloat16's tolerances, located, and the
report says what ran (one compare run, several facts)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from helpers import FIXTURES, pipeline, report_json

from backendlab.backends import BACKEND_NAMES
from backendlab.compare import compare
from backendlab.compare.worker import save_npz

MIXED = f"{FIXTURES / 'precision_models.py'}:mixed_bfloat16"


@pytest.fixture(scope="module")
def mixed(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    report = compare(model=MIXED, data=pipeline("arrays"), epochs=1, locate=True, out=str(out), pool=pool)
    return report, out


def test_a_mixed_bfloat16_model_agrees_within_bfloat16s_tolerances_which_the_report_names(mixed):
    report, out = mixed
    details = {b: (r.status, r.message, r.differences) for b, r in report.backends.items()}
    assert report.verdict == "agree", details
    criterion = report_json(out)["criterion"]
    assert criterion["dtype_policy"] == "mixed_bfloat16" and criterion["compute_dtype"] == "bfloat16"
    assert (criterion["rtol"], criterion["atol"], criterion["given"]) == (0.016, 0.01, [])
    md = (out / "report.md").read_text()
    assert "Tolerance: |a - ref| <= 0.01 + 0.016 * |ref| (exact; dtype policy mixed_bfloat16, bfloat16 compute" in md
    # Every saved model loads and predicts alike on every backend, and on Keras's numpy backend.
    cells = [cell["status"] for row in report.portability.values() for cell in row.values()]
    assert cells and set(cells) == {"agree"}, report.portability


def test_bfloat16_predictions_are_saved_as_float32_with_their_bfloat16_values(mixed):
    _, out = mixed
    for backend in BACKEND_NAMES:
        with np.load(out / backend / "predictions.npz") as saved:
            y = saved["out"]
        assert y.dtype == np.float32  # NumPy itself would have written raw |V2 bytes
        assert np.array_equal(y, y.astype(ml_dtypes.bfloat16).astype(np.float32))  # computed in bfloat16
        assert len(np.unique(y)) > 1


def test_the_locator_runs_on_bfloat16_and_names_rounding_as_rounding(mixed):
    report, _ = mixed
    for name in BACKEND_NAMES[1:]:
        d = report.backends[name].divergence
        assert d is not None and d["phase"] is None, (name, d)
        assert d["explanation"].startswith("no place differs by more than 2e-01 relative"), d
        assert d["explanation"].endswith("is bfloat16 rounding spread over the whole step")
        assert 0 < d["rel"] < 0.16  # bfloat16 rounding was measured, within twenty of its epsilons
    assert report.settings["locate_threshold"] == pytest.approx(0.156, rel=1e-2)


def test_report_md_names_the_models_own_compile_not_backendlabs_default(mixed):
    report, out = mixed
    md = (out / "report.md").read_text()
    assert (
        "What ran: optimizer Adam (learning_rate=0.002, amsgrad=True), loss BinaryCrossentropy(label_smoothing=0.1); "
        "batch 32, 2 steps an epoch; " in md
    )
    assert "dtype policy mixed_bfloat16; 1 device, 1 process; fit, jit_compile jax on" in md
    assert "sgd" not in md.lower()
    ran = report_json(out)["ran"]
    assert ran["jit_compile"]["jax"] is True and set(ran["jit_compile"]) == set(BACKEND_NAMES)
    assert report.settings["optimizer"] == "adam"


def test_save_npz_widens_bfloat16_exactly(tmp_path):
    values = np.array([1.0, 1.0078125, -3.140625, 2.0**-133], ml_dtypes.bfloat16)  # the last one subnormal
    save_npz(tmp_path / "a.npz", {"x": values})
    with np.load(tmp_path / "a.npz", allow_pickle=False) as saved:
        assert saved["x"].dtype == np.float32
        assert saved["x"].tolist() == [1.0, 1.0078125, -3.140625, 2.0**-133]
