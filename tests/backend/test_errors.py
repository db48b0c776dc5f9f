"""Every bad input gets one clear error, before any training starts."""

from __future__ import annotations

import pytest

from backendlab.cli import main
from backendlab.errors import UsageError
from backendlab.training import run_training

M = "tests/fixtures/user_models.py"
D = "tests/fixtures/user_data.py"

CASES = {
    "unknown model": (
        dict(model="vgg"),
        "unknown model 'vgg': use one of mlp, cnn, rnn, transformer, functional, mobilenet, resnet, bert, gpt, "
        "or path/to/file.py:build / package.module:build returning a keras.Model",
    ),
    "unknown dataset": (
        dict(data="mnist"),
        "unknown dataset 'mnist': use one of breast_cancer, digits, sequences, pairs, images, tokens, next_tokens, "
        "an .npz file, "
        "or path/to/file.py:function / package.module:function",
    ),
    "missing model file": (dict(model="nowhere.py:build"), "model file 'nowhere.py' does not exist"),
    "missing function": (dict(model=f"{M}:nothing"), f"model '{M}:nothing': '{M}' has no function 'nothing'"),
    "function raises": (dict(model=f"{M}:raises"), f"model '{M}:raises' raised RuntimeError: no GPU found"),
    "not a model": (dict(model=f"{M}:not_a_model"), f"model '{M}:not_a_model' returned int, not a keras.Model"),
    "missing module": (
        dict(model="no_such_pkg.models:build"),
        "model module 'no_such_pkg.models' cannot be imported: No module named 'no_such_pkg'",
    ),
    "data returns junk": (
        dict(data=f"{D}:bad_return"),
        f"data '{D}:bad_return' must return ((x_train, y_train), (x_test, y_test)) or (train, test) pipelines "
        "(tf.data, DataLoader, PyDataset, a function making a generator), got ndarray",
    ),
    "data counts differ": (
        dict(model="mlp", data=f"{D}:mismatched"),
        f"data '{D}:mismatched': x_train and y_train have different numbers of samples [9, 10]",
    ),
    "output too wide": (
        dict(model=f"{M}:three_outputs"),
        f"model '{M}:three_outputs' output has shape (None, 3) but data 'breast_cancer' has 2 classes (binary): "
        "its last dimension must be 1 (or 2 softmax units)",
    ),
    "two linear units": (
        dict(model=f"{M}:two_linear"),
        f"model '{M}:two_linear' output has shape (None, 2) but data 'breast_cancer' has 2 classes (binary): "
        "its last dimension must be 1 (or 2 softmax units)",
    ),
    "cnn on tabular data": (
        dict(model="cnn", data="breast_cancer"),
        "model 'cnn' needs image inputs (height, width, channels); data 'breast_cancer' has inputs of shape (30,)",
    ),
    "functional on unequal inputs": (
        dict(model="functional", data=f"{D}:unequal_inputs"),
        f"model 'functional' applies one shared layer to both inputs, so they need the same shape; "
        f"data '{D}:unequal_inputs' has inputs a (5,), b (7,)",
    ),
    "zero epochs": (dict(epochs=0), "epochs must be a positive integer, got 0"),
    "negative batch size": (dict(batch_size=-4), "batch size must be a positive integer, got -4"),
    "unknown optimizer": (
        dict(optimizer="sgdd"),
        "unknown optimizer 'sgdd': use a keras.optimizers name such as sgd, adam, rmsprop, adamw",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_exact_error(case):
    kwargs, message = CASES[case]
    with pytest.raises(UsageError) as err:
        run_training(**kwargs)
    assert str(err.value) == message


def test_wrong_input_shape_names_model_data_and_shapes():
    with pytest.raises(UsageError) as err:
        run_training(f"{M}:wrong_input")
    text = str(err.value)
    assert text.startswith(
        f"model '{M}:wrong_input' does not accept the inputs of data 'breast_cancer' (one input of shape (30,)): "
    )
    assert "\n" not in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "0"], "backendlab: error: argument --epochs: must be a positive integer, got '0'"),
        (
            ["train", "--batch-size", "-1"],
            "backendlab: error: argument --batch-size: must be a positive integer, got '-1'",
        ),
        (
            ["train", "--model", "vgg"],
            "backendlab: error: unknown model 'vgg': use one of mlp, cnn, rnn, transformer, functional, "
            "mobilenet, resnet, bert, gpt, or path/to/file.py:build / package.module:build returning a keras.Model",
        ),
        (["train", "--save", "model.h5"], "backendlab: error: --save needs a path ending in .keras, got 'model.h5'"),
    ],
)
def test_command_line_errors_are_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    assert capsys.readouterr().err.strip() == message
