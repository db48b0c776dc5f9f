"""The zoo's real architectures (keras.applications' MobileNetV3Small and ResNet, keras_hub's BERT and
GPT-2 from configs) train on every backend, compare runs on them, their Dropout layers are reported
as stochastic, and with dropout on, drawing portably (--random portable, the default), every backend
agrees exactly. Nothing is downloaded."""

from __future__ import annotations

import json

import pytest
from helpers import HAS_KERAS_HUB as HUB

from backendlab.compare.results import AGREE_ROUNDING
from backendlab.models import HUB_MODELS

needs_hub = pytest.mark.skipif(not HUB, reason="keras_hub is not installed (see the README: keras-hub --no-deps)")

#: Options per model. None now: MobileNetV3Small's BatchNormalization over 1x1 maps at batch 32 amplifies
#: float32 rounding, and with the seed's SGD at 0.01 the backends part by 1e-2 within 4 steps, but no further
#: than a 1-ulp change of the start does (at most 4.2x the noise floor, measured): agree within rounding.
OPTIONS: dict[str, dict] = {}

DROPOUTS = ["self_attention_dropout", "feedforward_dropout", "dropout"]  # in each transformer layer
#: model -> (its default data, the stochastic layers it must report): all Dropout layers
ARCHITECTURES = {
    "mobilenet": ("images", ["dropout"]),  # the classifier's
    "resnet": ("images", []),
    # 2 layers of 3, the embeddings' and the head's
    "bert": ("tokens", [*DROPOUTS, *DROPOUTS, "embeddings_dropout", "dropout"]),
    "gpt": ("next_tokens", [*DROPOUTS, *DROPOUTS, "embeddings_dropout"]),  # 2 layers of 3, the embeddings'
}
PARAMS = [pytest.param(m, marks=needs_hub) if m in HUB_MODELS else m for m in ARCHITECTURES]


def _kinds(names: list[str]) -> list[str]:
    """Layer names without Keras's uniquifying suffix (dropout_3 -> dropout), sorted."""
    return sorted(name.rstrip("0123456789").rstrip("_") for name in names)


@pytest.mark.parametrize("model", PARAMS)
def test_compare_agrees_exactly_with_dropout_on(pool, tmp_path, model):
    from backendlab.compare import compare

    # The keras_hub models' .keras files load on every backend only once keras_hub is imported: checked
    # on bert (gpt's files go through the same registration; its 9 loads would add a minute).
    portability = model == "bert"
    options = OPTIONS.get(model, {})
    report = compare(model=model, epochs=1, portability=portability, out=str(tmp_path), pool=pool, **options)
    assert report.verdict in ("agree", AGREE_ROUNDING), {b: (r.status, r.message) for b, r in report.backends.items()}
    assert report.criterion.kind == "exact"
    assert _kinds(report.stochastic_layers) == sorted(ARCHITECTURES[model][1])
    assert set(report.stochastic_marks.values()) <= {"portable"}  # every Dropout on, drawing the same numbers
    if model == "bert":  # its 8 Dropout layers on, and still inside the exact tolerance, not only the noise floor
        assert report.verdict == "agree", {b: r.differences.get("step_losses") for b, r in report.backends.items()}
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["batches"]["identical"] is True and written["batches"]["kind"] == "arrays"
    assert written["batches"]["steps"] == 4  # 128 samples in batches of 32
    if not portability:
        return
    # Every backend's saved .keras file loads on every backend and predicts the same.
    cells = [cell for row in report.portability.values() for loader, cell in row.items() if loader != "numpy"]
    assert len(cells) == 9 and {c["status"] for c in cells} == {"agree"}


def test_each_architecture_has_bench_rows(tmp_path):
    from rich.console import Console

    from backendlab.bench.cli import run_with_bars as run_preset
    from backendlab.bench.presets import PRESETS

    models = tuple(m for m in ARCHITECTURES if HUB or m not in HUB_MODELS)
    # One fit cell per backend and model, one timed step (JAX compiles each model: tens of seconds).
    preset = PRESETS["tiny"].with_options(
        models=models, modes=("fit",), samples_per_repeat=32, repeats=1, native=False, timeout_s=900.0
    )
    report = run_preset(preset, tmp_path, console=Console(file=open(tmp_path / "progress.txt", "w")))
    rows = {(r.backend, r.model, r.mode): r for r in report.rows}
    assert len(rows) == 3 * len(models)
    assert all(r.ok and r.samples_per_sec > 0 and r.params > 0 for r in rows.values()), [
        (k, r.note) for k, r in rows.items() if not r.ok
    ]
    assert {r.params for r in rows.values() if r.model == "resnet"} == {44644}
