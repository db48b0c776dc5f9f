"""Named benchmark presets; ``backendlab bench`` options and ``benchmarks/*.py`` start from one.

``quick`` finishes in under 3 minutes on a 2-core CPU machine (what ``nox -s bench`` runs);
``full`` is the README's table, about 5 minutes on the same machine (4.5 measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from backendlab.backends import BACKEND_NAMES
from backendlab.errors import UsageError
from backendlab.runspec import RunSpec


@dataclass(frozen=True)
class Preset:
    name: str
    models: tuple[str, ...]
    backends: tuple[str, ...] = BACKEND_NAMES
    batch_sizes: tuple[int, ...] = (256,)
    modes: tuple[str, ...] = ("fit", "predict")
    repeats: int = 5
    warmup: int = 1  # untimed passes after the first step, before the timed repeats
    samples_per_repeat: int = 4096  # rounded up to whole executions of batch_size x steps_per_execution
    steps_per_execution: tuple[int, ...] = (1,)
    jit_compile: tuple[str, ...] = ("auto",)  # auto | true | false, as keras.Model.compile takes it
    # The models that run every steps_per_execution x jit_compile pair; the others the first
    # pair only. Empty: every model. (Keeps the full preset near 5 minutes.)
    variant_models: tuple[str, ...] = ()
    # What fit reads its batches from: arrays, or pipelines of these kinds over the same arrays (fit cells only).
    pipelines: tuple[str, ...] = ("arrays",)
    # How the Keras cells' random layers draw (--random): Keras's own generators, or portably; each is a row.
    random: tuple[str, ...] = ("backend",)
    threads: int | None = None  # intra-op threads; None keeps each framework's default
    native: bool = True  # run the native loops for the models that have them
    matmul_n: int = 2048  # the side of the square float32 matmul that measures the peak
    # The training run every cell shares: its seed, and for a user model its data
    # (file.py:function or a bundled dataset); model and batch size vary per cell.
    run: RunSpec = field(default_factory=RunSpec)
    input_shape: tuple[int, ...] | None = None  # for a user model without Input
    timeout_s: float = 900.0  # per worker

    def with_options(self, **changes) -> Preset:
        """The preset with each given (not None) field changed; RunSpec fields change its ``run``."""
        changes = {k: v for k, v in changes.items() if v is not None}
        run_fields = {f.name for f in fields(RunSpec)}
        run = self.run.replace(**{k: v for k, v in changes.items() if k in run_fields})
        return replace(self, run=run, **{k: v for k, v in changes.items() if k not in run_fields})


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "quick", ("mlp", "cnn"), batch_sizes=(256,), repeats=3, samples_per_repeat=2048, matmul_n=1536, timeout_s=240.0
    ),
    "full": Preset(
        "full",
        ("mlp", "cnn", "rnn", "transformer"),
        batch_sizes=(32, 256),
        repeats=5,
        samples_per_repeat=2048,
        steps_per_execution=(1, 32),
        variant_models=("mlp",),
    ),
    # What portable randomness costs (issue 26): each model with Keras's own generators and with the portable one.
    "random": Preset(
        "random",
        ("cnn_dropout", "bert"),
        batch_sizes=(32, 256),
        modes=("fit",),
        repeats=5,
        samples_per_repeat=2048,
        native=False,
        random=("backend", "portable"),
    ),
    # What the tests run: seconds per backend, numbers meaningless.
    "tiny": Preset(
        "tiny",
        ("mlp", "cnn"),
        batch_sizes=(32,),
        modes=("fit", "predict"),
        repeats=2,
        warmup=0,
        samples_per_repeat=64,
        matmul_n=256,
        timeout_s=180.0,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}: valid presets are {', '.join(PRESETS)}") from None
