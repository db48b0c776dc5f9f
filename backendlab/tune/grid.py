"""The settings ``tune`` tries, and the tolerance each is held to. Imports no framework.

A :class:`Setting` is one point of the grid: ``jit_compile``, ``steps_per_execution``, the loop
(Keras's ``fit``, backendlab's ``TrainStep``, or ``fit`` with backendlab's whole-step train
function where Keras's own fit does not compile the whole step), intra-op and inter-op threads, and the dtype
policy. The grid is searched one axis at a time from the backend's default (what
``model.compile()`` gives), then the fastest value of each axis that kept parity is tried in
combination: a handful of settings per backend instead of the full product, which would take
hours on a small machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from backendlab.backends import BACKENDS
from backendlab.compare.results import DEFAULT_ATOL, DEFAULT_RTOL

#: ``fit-wholestep``: fit inside ``backendlab.whole_step_fit``, its whole step one compiled graph (always jit=on).
WHOLE_STEP = "fit-wholestep"
LOOPS = ("fit", "trainstep", WHOLE_STEP)
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")

#: What each dtype policy's parity is held to against float32 training: (rtol, atol).
#: float32 settings get compare's tolerance; mixed precision gets the relative tolerance
#: ``torch.testing.assert_close`` uses for its compute dtype (bfloat16 1.6e-2, float16 1e-3),
#: with compare's atol, so values near zero do not dominate.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (DEFAULT_RTOL, DEFAULT_ATOL),
    "mixed_bfloat16": (1.6e-2, DEFAULT_ATOL),
    "mixed_float16": (1e-3, DEFAULT_ATOL),
}


@dataclass(frozen=True)
class Setting:
    """One way of training; None for threads means the framework's own default."""

    jit_compile: bool | str  # True, False, or "auto" (the default's, until the worker resolves it)
    steps_per_execution: int = 1
    loop: str = "fit"
    intra_threads: int | None = None
    inter_threads: int | None = None
    dtype_policy: str = "float32"

    @property
    def label(self) -> str:
        jit = "auto" if self.jit_compile == "auto" else "on" if self.jit_compile else "off"
        parts = [f"jit={jit}"]
        if self.steps_per_execution > 1:
            parts.append(f"spe={self.steps_per_execution}")
        if self.loop != "fit":
            parts.append(self.loop)
        if self.intra_threads is not None or self.inter_threads is not None:
            parts.append(f"threads={self.intra_threads or 'default'}/{self.inter_threads or 'default'}")
        if self.dtype_policy != "float32":
            parts.append(self.dtype_policy)
        return " ".join(parts)

    @property
    def threads(self) -> tuple[int | None, int | None]:
        return self.intra_threads, self.inter_threads

    @property
    def tolerance(self) -> tuple[float, float]:
        return TOLERANCES[self.dtype_policy]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Setting:
        return cls(**d)

    def replace(self, **changes) -> Setting:
        return replace(self, **changes)


def default_setting() -> Setting:
    """What ``model.compile()`` gives. Keras resolves ``jit_compile="auto"`` per backend, device and model
    (XLA on JAX; on TensorFlow only with an accelerator; eager PyTorch); the worker asks it."""
    return Setting(jit_compile="auto")


def resolved(settings: list[Setting], jit: bool) -> list[Setting]:
    """``settings`` with "auto" replaced by what Keras resolved it to, each setting once."""
    return list(dict.fromkeys(s.replace(jit_compile=jit) if s.jit_compile == "auto" else s for s in settings))


@dataclass(frozen=True)
class Grid:
    """The values tried on each axis besides the default's."""

    jit_compile: tuple[bool, ...] = (True, False)
    steps_per_execution: tuple[int, ...] = (1, 32)
    loops: tuple[str, ...] = LOOPS
    threads: tuple[tuple[int | None, int | None], ...] = ((None, None), (1, 1))
    dtype_policies: tuple[str, ...] = ("float32", "mixed_bfloat16")


def single_axis_settings(grid: Grid) -> list[Setting]:
    """The default, then each axis changed alone (threads apart: a framework sizes its pools when it starts)."""
    default = default_setting()
    settings = [default]

    def add(setting: Setting) -> None:
        if setting not in settings:
            settings.append(setting)

    for jit in grid.jit_compile:
        add(default.replace(jit_compile=jit))
    for spe in grid.steps_per_execution:
        add(default.replace(steps_per_execution=spe))
    for loop in grid.loops:
        add(default.replace(loop=loop, **({"jit_compile": True} if loop == WHOLE_STEP else {})))
        if loop == "trainstep" and True in grid.jit_compile:
            # TrainStep compiled is a loop of its own (on PyTorch its whole step in one graph), not only
            # jit=on's combination with the fastest loop: a model whose fit is slower compiled gets it too.
            add(default.replace(loop=loop, jit_compile=True))
    for policy in grid.dtype_policies:
        add(default.replace(dtype_policy=policy))
    return settings


def applicable(setting: Setting, backend: str, device_kind: str = "cpu") -> str | None:
    """Why ``setting`` cannot run on ``backend`` (a note for its row), or None when it can."""
    info = BACKENDS[backend]
    if setting.steps_per_execution > 1 and not info.steps_per_execution:
        return f"Keras on {info.framework} does not allow steps_per_execution > 1"
    if setting.steps_per_execution > 1 and setting.loop == "trainstep":
        return "TrainStep takes one batch per call; steps_per_execution is fit's"
    if setting.loop == WHOLE_STEP and info.fit_in_one_graph:
        return f"Keras's fit on {info.framework} already compiles its whole step ({info.compiler})"
    if setting.loop == WHOLE_STEP and setting.jit_compile is not True:
        return "the whole-step train function is compiled: jit=on only"
    if setting.dtype_policy == "mixed_float16" and device_kind == "cpu":
        return "float16 mixed precision is for GPUs; not tried on a CPU"
    if setting.dtype_policy == "mixed_float16" and setting.loop == "trainstep":
        return "TrainStep does not scale the loss; mixed_float16 needs fit's LossScaleOptimizer"
    return None


def combine(default: Setting, winners: list[Setting], backend: str, device_kind: str = "cpu") -> Setting:
    """The default with each winner's change from it applied, fastest first, as long as the result can run."""
    together = default
    for winner in winners:
        changes = {k: v for k, v in winner.to_dict().items() if v != getattr(default, k)}
        candidate = together.replace(**changes)
        if applicable(candidate, backend, device_kind) is None:
            together = candidate
    return together
