"""Per-step losses under fit are each batch's own, exact however long the epoch."""

from __future__ import annotations

import numpy as np

from backendlab.training import run_training


def test_fit_records_each_batch_loss_exactly_on_a_long_epoch():
    # 455 steps of one sample: recovering losses from Keras's float32 running mean (the old way)
    # drifts by about k * 6e-8 relative at step k, past 1e-6 long before the epoch ends.
    fit = run_training(epochs=1, batch_size=1, optimizer="adam", learning_rate=1e-3)
    custom = run_training(epochs=1, batch_size=1, optimizer="adam", learning_rate=1e-3, loop="custom")
    exact, reference = np.array(fit.step_losses), np.array(custom.step_losses)
    assert exact.size == reference.size == 455
    np.testing.assert_allclose(exact, reference, rtol=1e-6, atol=1e-9)
    running = np.array(fit.step_running_loss, dtype=np.float64)
    totals = running * np.arange(1, running.size + 1)
    recovered = np.diff(totals, prepend=0.0)
    assert np.max(np.abs(recovered - reference) / np.maximum(np.abs(reference), 1e-3)) > 1e-6
    assert set(fit.history) == {"loss", "accuracy"} and set(fit.test) == {"loss", "accuracy"}
