"""The seed's workflow on the active backend: build, compile, fit (or the custom loop), evaluate, predict.

Batches come in an order backendlab draws from a seeded NumPy generator, never the
backend's, so the same seed gives the same batches on every backend.

- :mod:`~backendlab.training.schedule`: which samples each step reads (NumPy only);
- :mod:`~backendlab.training.preparation`: the run resolved, the model built, compiled and checked;
- :mod:`~backendlab.training.stochastic`: which layers draw random numbers, observed;
- :mod:`~backendlab.training.feeds`, :mod:`~backendlab.training.loops`: what each epoch reads, and
  fit's and the custom loop's epochs; :mod:`~backendlab.training.hooks`: what backendlab adds to fit;
- :mod:`~backendlab.training.step`: :class:`TrainStep`, the custom loop's step, for users too;
- :mod:`~backendlab.training.files`: saving and loading ``.keras`` files and the run they carry;
- :mod:`~backendlab.training.nonfinite`: stopping at the first NaN or inf;
  :mod:`~backendlab.training.keras_fixes`: where Keras would import TensorFlow for nothing;
- :mod:`~backendlab.training.run`: :func:`run_training`, all of it in one call.

Importing this package imports no framework, and none of its modules until one of the names
below is asked for: ``from backendlab.training.keras_fixes import set_random_seed`` loads that
module alone.
"""

from __future__ import annotations

from backendlab import lazy

#: Each name this package offers, and the module that defines it.
_EXPORTS = {
    "run_training": "run",
    "backend_info": "info",
    "StepCallback": "loops",
    "train": "loops",
    "predict": "loops",
    "Prepared": "preparation",
    "prepare": "preparation",
    "build_and_compile": "preparation",
    "check_padding": "preparation",
    "data_parallel_policy": "preparation",
    "make_optimizer": "preparation",
    "start_weights": "preparation",
    "DEFAULT_OPTIMIZER": "preparation",
    "DEFAULT_LEARNING_RATE": "preparation",
    "stochastic_layers": "stochastic",
    "sublayers": "stochastic",
    "switch_off": "stochastic",
    "RECORD_READS": "schedule",
    "batch_slices": "schedule",
    "check_pipeline_options": "schedule",
    "epoch_orders": "schedule",
    "epoch_steps": "schedule",
    "first_rows": "schedule",
    "own_share": "schedule",
    "pad_last_batch": "schedule",
    "padded_samples": "schedule",
    "samples_per_epoch": "schedule",
    "steps_per_epoch": "schedule",
    "take_own": "feeds",
    "STEP_LOSS": "hooks",
    "record_step_losses": "hooks",
    "RUN_ENTRY": "files",
    "check_save_path": "files",
    "load_model": "files",
    "outside_distribution": "files",
    "resumed_spec": "files",
    "save_model": "files",
    "saved_run": "files",
    "trained_spec": "files",
    "TrainStep": "step",
    "whole_step_fit": "step",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy.exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})
