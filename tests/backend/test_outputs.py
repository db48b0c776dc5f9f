"""Where results go, and what is resumed from, fail before any work with one line and exit 2.

Tests run as root here, which may write anywhere chmod forbids; a path under a regular
file cannot be written by anyone, so that is the unwritable place these tests use.
"""

from __future__ import annotations

import pytest
from helpers import FIXTURES
from known_differences import keras_loads_torch_optimizers

SAVED_ON_TORCH = FIXTURES / "saved_on_torch.keras"  # the seed's MLP, model.save() under torch after 2 SGD steps


def test_a_model_compiled_and_saved_on_torch_loads_here_with_its_optimizer(backend):
    import keras

    from backendlab.training import load_model

    model = load_model(SAVED_ON_TORCH)
    optimizer = model.optimizer
    assert type(optimizer).__name__ == "SGD" and optimizer.nesterov and optimizer.momentum == 0.9
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2  # its state came with it
    if not keras_loads_torch_optimizers():
        with pytest.raises(TypeError, match="keras.src.backend.torch.optimizers.torch_sgd cannot be imported"):
            keras.saving.load_model(SAVED_ON_TORCH)
