"""What a benchmark run produces, as dataclasses that serialize to JSON.

The terminal table, ``bench.md`` and ``bench.png`` are all drawn from a
:class:`BenchReport`; nothing is drawn from live state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from backendlab import display
from backendlab.results import to_jsonable

#: How FLOPs are counted; written into every report so a reader knows what the GFLOP/s mean.
FLOP_CONVENTION = (
    "2 FLOPs per multiply-add, counted from the layers (Dense, Conv, LSTM/GRU/SimpleRNN, "
    "MultiHeadAttention); activations, pooling, normalization and biases are not counted; "
    "a training step counts 3x the forward pass (forward, input gradient, weight gradient)"
)


@dataclass
class BenchRow:
    """One cell: backend x impl x model x mode x batch size x settings."""

    backend: str
    impl: str  # keras | native
    model: str
    mode: str  # fit | predict
    batch_size: int
    jit_compile: str  # what Keras resolved it to ("True"/"False"), or the native compiler
    steps_per_execution: int
    threads: int | None  # the framework's intra-op thread count (None only in rows from before it was recorded)
    status: str = "ok"  # ok | not_applicable | failed
    note: str = ""
    repeats: int = 0
    steps_per_repeat: int = 0
    samples_per_sec: float | None = None  # median over the repeats
    samples_per_sec_min: float | None = None
    samples_per_sec_max: float | None = None
    ms_per_step: float | None = None  # median
    ms_per_step_min: float | None = None
    ms_per_step_max: float | None = None
    first_step_s: float | None = None  # tracing and compiling included
    peak_rss_mb: float | None = None  # the worker's high-water mark when the cell ended
    device_peak_mb: float | None = None  # accelerator memory, None on a CPU
    params: int | None = None
    flops_per_sample: float | None = None  # forward FLOPs; a fit step counts 3x
    gflops_per_sec: float | None = None
    fraction_of_peak: float | None = None  # of the machine's measured float32 matmul peak
    native_ratio: float | None = None  # keras samples/s over native samples/s, same backend
    # What fit read its batches from (backendlab.pipelines.KINDS): arrays, or a pipeline fit reads through
    # backendlab's reader; for a pipeline, the fraction of the step time spent waiting in its next().
    pipeline: str = "arrays"
    input_stall: float | None = None
    random: str = "backend"  # how its random layers drew (--random): Keras's own generators, or portable

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def settings(self) -> str:
        text = (
            f"jit={self.jit_compile} spe={self.steps_per_execution} thr={self.threads if self.threads else 'default'}"
        )
        text = text if self.pipeline == "arrays" else f"{text} input={self.pipeline}"
        return text if self.random == "backend" else f"{text} random={self.random}"

    @classmethod
    def from_dict(cls, d: dict) -> BenchRow:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Machine:
    cpu: str
    cores: int | None
    platform: str
    python: str
    keras: str | None
    frameworks: dict[str, str | None]  # backend -> framework version
    matmul_peak_gflops: float | None  # the best any backend reached, per the matmul size below
    matmul_peak_by_backend: dict[str, dict] = field(default_factory=dict)  # backend -> {device, gflops, n}
    devices: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class WorkerFailure:
    backend: str
    status: str  # failed | crashed | timeout
    message: str
    log_tail: str


@dataclass
class BenchReport:
    preset: str
    machine: Machine
    rows: list[BenchRow]
    failures: list[WorkerFailure] = field(default_factory=list)
    flop_convention: str = FLOP_CONVENTION
    wall_s: float | None = None

    def __repr__(self) -> str:
        return display.text(self, "backendlab.bench.report:renderables")

    def _repr_html_(self) -> str:
        return display.html(self, "backendlab.bench.report:renderables")

    def to_dict(self) -> dict:
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, d: dict) -> BenchReport:
        return cls(
            preset=d["preset"],
            machine=Machine(**d["machine"]),
            rows=[BenchRow.from_dict(r) for r in d["rows"]],
            failures=[WorkerFailure(**f) for f in d.get("failures", [])],
            flop_convention=d.get("flop_convention", FLOP_CONVENTION),
            wall_s=d.get("wall_s"),
        )
