"""The seed's workflow in one call: prepare, train, evaluate, and optionally save."""

from __future__ import annotations

import os
from typing import Any

from backendlab.results import TrainResult
from backendlab.runspec import RunSpec
from backendlab.training.files import check_save_path, save_model, trained_spec
from backendlab.training.loops import StepCallback, train
from backendlab.training.preparation import prepare


def run_training(
    model: RunSpec | str = "mlp",
    data: str | None = None,
    *,
    save: str | os.PathLike | None = None,
    on_step: StepCallback | None = None,
    **options: Any,
) -> TrainResult:
    """The seed's workflow in one call: compile, fit (or ``loop="custom"``), evaluate; optionally save.

    ``model`` is a model name or a whole :class:`~backendlab.runspec.RunSpec`; ``options`` are
    :class:`RunSpec` fields (epochs, batch_size, optimizer, learning_rate, seed, loop, devices,
    drop_remainder, disable_stochastic) and :func:`prepare`'s ``resume`` and ``initial_weights``.
    Training that goes NaN or inf raises :class:`~backendlab.errors.NonFiniteError`, and nothing is saved.
    """
    if save is not None:
        check_save_path(save)
    prep = prepare(model, data, **options)
    result = train(prep, on_step)
    if save is not None:
        result.saved_model = str(save_model(prep.model, save, trained_spec(prep)))
    return result
