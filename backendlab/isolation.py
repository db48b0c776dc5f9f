"""What a warm worker puts back between jobs, so that no job sees what an earlier one left.

Runs only inside a worker process (``KERAS_BACKEND`` is set): :meth:`Baseline.take` imports Keras and
the framework, and notes the state a job may change; :meth:`Baseline.restore` puts it back:

* Keras's global state (``clear_session``: layer name counters, the global seed generator, TF's graph);
* the configuration: floatx, epsilon, image data format, the dtype policy, the distribution;
* the registered custom objects, and the modules a job imported from outside the installed
  packages (users' model and data files), so a class registered by one job is unknown to the next;
* the random seeds (Python's, NumPy's, the framework's and Keras's own);
* torch.compile's caches; the environment variables, ``sys.path`` and the working directory.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass

#: Where installed code lives: modules from there stay imported between jobs (re-importing a framework breaks it).
_LIBRARY = tuple(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
#: The seed every job starts from when it sets none of its own (each backendlab job sets its own).
RESET_SEED = 0


def _user_module(module) -> bool:
    """A module a job brought in from a user's file or package, not from the installed libraries or backendlab."""
    path = getattr(module, "__file__", None)
    name = getattr(module, "__name__", "")
    if name.startswith("_backendlab_user_"):
        return True
    if not path or name == "backendlab" or name.startswith("backendlab."):
        return False
    return not os.path.abspath(path).startswith(_LIBRARY)


def _registry():
    """Keras's registries of custom objects: the public dict and, where this Keras has it, the name map."""
    import keras

    objects = keras.saving.get_custom_objects()  # documented as a live reference to the global dict
    try:
        from keras.src.saving import object_registration
    except ImportError:  # a Keras that moved it: the public dict is the one that matters for loading
        return [objects]
    return [objects, getattr(object_registration, "GLOBAL_CUSTOM_NAMES", {})]


@dataclass
class Baseline:
    config: dict
    registries: list[dict]
    modules: set[str]
    path: list[str]
    environ: dict[str, str]
    cwd: str
    distribution: object = None

    @classmethod
    def take(cls) -> Baseline:
        """Keras's state as it is now: call it once the framework is imported (and warmed up)."""
        import keras

        config = {
            "floatx": keras.config.floatx(),
            "epsilon": keras.config.epsilon(),
            "image_data_format": keras.config.image_data_format(),
            "dtype_policy": keras.config.dtype_policy(),
        }
        from backendlab.training.keras_fixes import set_random_seed

        set_random_seed(RESET_SEED)  # the first job starts as every later one will
        return cls(
            config=config,
            registries=[dict(r) for r in _registry()],
            modules=set(sys.modules),
            path=list(sys.path),
            environ=dict(os.environ),
            cwd=os.getcwd(),
            distribution=keras.distribution.distribution() if hasattr(keras, "distribution") else None,
        )

    def restore(self) -> None:
        import keras

        from backendlab.training.keras_fixes import set_random_seed

        os.chdir(self.cwd)
        sys.path[:] = self.path
        os.environ.clear()
        os.environ.update(self.environ)
        keras.backend.clear_session()
        keras.config.set_floatx(self.config["floatx"])
        keras.config.set_epsilon(self.config["epsilon"])
        keras.config.set_image_data_format(self.config["image_data_format"])
        keras.config.set_dtype_policy(self.config["dtype_policy"])
        if hasattr(keras, "distribution"):
            keras.distribution.set_distribution(self.distribution)
        for live, saved in zip(_registry(), self.registries, strict=True):
            live.clear()
            live.update(saved)
        for name in set(sys.modules) - self.modules:
            if _user_module(sys.modules.get(name)):
                del sys.modules[name]
        if "torch._dynamo" in sys.modules:
            sys.modules["torch._dynamo"].reset()
        set_random_seed(RESET_SEED)
