"""The catalog of known differences (compare.known): its detectors on made-up divergences and configs."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from backendlab.compare.known import DATA_PARALLEL, by_id, catalog, layers, match, model_config


def _divergence(phase, layer=None, layer_class=None, variable=None) -> dict:
    return {"step": 1, "phase": phase, "layer": layer, "layer_class": layer_class, "variable": variable}


def _layer(cls, name, **config) -> dict:
    return {"module": "keras.layers", "class_name": cls, "config": {"name": name, **config}}


def _model(*layer_list, loss="binary_crossentropy") -> dict:
    return {"class_name": "Functional", "config": {"name": "m", "layers": list(layer_list)},
            "compile_config": {"loss": loss}}  # fmt: skip


L1 = {"module": "keras.regularizers", "class_name": "L1", "config": {"l1": 0.01}}
CASES = [
    # (entry, divergence, backend, reference, model)
    ("tensorflow-sparse-embedding-gradient", _divergence("update", "emb", "Embedding"), "tensorflow", "jax", None),
    ("tensorflow-sparse-embedding-gradient", _divergence("update", "emb", "Embedding"), "jax", "tensorflow", None),
    ("torch-moments-variance", _divergence("forward", "bn", "BatchNormalization"), "torch", "jax", None),
    (
        "torch-average-pooling-same-padding",
        _divergence("forward", "pool", "AveragePooling2D"),
        "torch",
        "jax",
        _model(_layer("AveragePooling2D", "pool", padding="same")),
    ),
    (
        "jax-abs-slope-at-zero",
        _divergence("gradient", "dense", "Dense", "dense/kernel"),
        "torch",
        "jax",
        _model(_layer("Dense", "dense", kernel_regularizer=L1, activation="linear")),
    ),
    (
        "tensorflow-sigmoid-binary-crossentropy",
        _divergence("loss"),
        "tensorflow",
        "jax",
        _model(_layer("Dense", "head", activation="sigmoid")),
    ),  # fmt: skip
    (
        "tensorflow-softmax-categorical-crossentropy",
        _divergence("loss"),
        "tensorflow",
        "jax",
        _model(_layer("Dense", "head", activation="softmax"), loss="sparse_categorical_crossentropy"),
    ),
    (
        "batchnorm-per-device-statistics",
        {**_divergence(None), "during": DATA_PARALLEL},
        "torch",
        "jax",
        _model(_layer("Dense", "dense"), _layer("BatchNormalization", "norm", synchronized=False)),
    ),
    (
        "jax-leaky-relu-slope-at-zero",
        _divergence("gradient", "dense", "Dense", "dense/bias"),
        "tensorflow",
        "jax",
        _model(_layer("Dense", "dense", activation="leaky_relu")),
    ),
    (
        "tensorflow-maximum-tie-gradient",
        _divergence("gradient", "right", "Dense", "right/bias"),
        "tensorflow",
        "jax",
        _model(_layer("Dense", "right", activation="linear"), _layer("Maximum", "max")),
    ),
    (
        "jax-clip-slope-at-bound",
        _divergence("gradient", "dense", "Dense", "dense/bias"),
        "tensorflow",
        "jax",
        _model(_layer("Dense", "dense"), _layer("Clip", "clip", low=0.0, high=1.0)),
    ),
    (
        "torch-top-k-ties",
        _divergence("forward", "top_k", "TopKGather"),
        "torch",
        "jax",
        _model(_layer("Dense", "scores"), _layer("TopKGather", "top_k", k=2)),
    ),
    (
        "torch-cast-out-of-range-wraps",
        _divergence("forward", "quantize", "Quantize"),
        "torch",
        "jax",
        _model(_layer("Dense", "dense"), _layer("Quantize", "quantize", scale=16.0)),
    ),
]


@pytest.mark.parametrize(("entry", "divergence", "backend", "reference", "model"), CASES)
def test_each_entry_matches_where_it_shows(entry, divergence, backend, reference, model):
    assert match(divergence, backend, reference, model) == entry


def test_an_entry_matches_only_between_a_backend_that_computes_it_and_one_that_does_not():
    # Only JAX takes another slope: TensorFlow against PyTorch is not explained by it.
    model = _model(_layer("Dense", "dense", activation="leaky_relu"))
    assert match(_divergence("gradient", "dense", "Dense"), "tensorflow", "torch", model) is None
    # The wrong phase, the wrong class, the wrong config, an unreadable model: no match.
    assert match(_divergence("forward", "emb", "Embedding"), "tensorflow", "jax", None) is None
    assert match(_divergence("forward", "bn", "Dense"), "torch", "jax", None) is None
    valid = _model(_layer("AveragePooling2D", "pool", padding="valid"))
    assert match(_divergence("forward", "pool", "AveragePooling2D"), "torch", "jax", valid) is None
    assert match(_divergence("forward", "pool", "AveragePooling2D"), "torch", "jax", None) is None
    assert (
        match(_divergence("gradient", "right", "Dense"), "tensorflow", "jax", _model(_layer("Dense", "right"))) is None
    )
    assert match(_divergence(None), "tensorflow", "jax", None) is None  # nowhere located: nothing to explain
    # Per-device statistics explain only data-parallel training of a model with BatchNormalization, on
    # TensorFlow or PyTorch against JAX (the two per-device backends agree with each other).
    norm = _model(_layer("BatchNormalization", "norm", synchronized=False))
    data_parallel = {**_divergence(None), "during": DATA_PARALLEL}
    assert match(data_parallel, "tensorflow", "torch", norm) is None
    assert match(data_parallel, "tensorflow", "jax", _model(_layer("Dense", "dense"))) is None
    assert match(_divergence(None), "tensorflow", "jax", norm) is None
    # TensorFlow's synchronized BatchNormalization takes the global batch's statistics: not this.
    synchronized = _model(_layer("BatchNormalization", "norm", synchronized=True))
    assert match(data_parallel, "tensorflow", "jax", synchronized) is None
    # A user's own layer is known by its class name in the saved config, not by a key such as the optimizer's.
    clipnorm = {**_model(_layer("Dense", "dense")), "compile_config": {"optimizer": {"config": {"clipnorm": 1.0}}}}
    assert match(_divergence("gradient", "dense", "Dense"), "tensorflow", "jax", clipnorm) is None
    top_k = _model(_layer("TopKGather", "top_k"))
    assert match(_divergence("forward", "top_k", "TopKGather"), "tensorflow", "jax", top_k) is None


def test_every_entry_is_complete_and_described():
    ids = [k.id for k in catalog()]
    assert len(ids) == len(set(ids)) >= 10
    for k in catalog():
        assert k.backends and k.phases and k.explanation.endswith(".")
        assert set(k.phases) <= {"forward", "loss", "gradient", "update", "state", DATA_PARALLEL}
        assert k.describe().startswith(f"known difference {k.id}: ")
    assert by_id("no-such-entry") is None and by_id(None) is None


def test_the_model_config_is_read_from_a_keras_file_and_nested_layers_found(tmp_path):
    inner = {"class_name": "Sequential", "config": {"name": "inner", "layers": [_layer("Dense", "deep")]}}
    config = _model(_layer("InputLayer", "input"), inner)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    (tmp_path / "model.keras").write_bytes(buffer.getvalue())
    read = model_config(tmp_path / "model.keras")
    assert read == config
    assert set(layers(read)) == {"m", "input", "inner", "deep"}
    assert model_config(tmp_path / "missing.keras") is None
    (tmp_path / "bad.keras").write_text("not a zip")
    assert model_config(tmp_path / "bad.keras") is None
