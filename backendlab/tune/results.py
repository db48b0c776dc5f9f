"""What ``tune`` produces, as dataclasses that serialize to JSON; tune.md, the table and the plot come from them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from backendlab import display
from backendlab.bench.results import Machine, WorkerFailure
from backendlab.results import to_jsonable

#: The parity verdicts a setting can get against its backend's default settings.
SAME, DIFFERS, REFERENCE, NOT_CHECKED = "same", "differs", "reference", "not checked"
#: Outside the tolerance, but no further from the default than rounding moves it (compare's noise floor).
WITHIN_ROUNDING = "within rounding"


@dataclass
class Parity:
    """Whether a setting trains as the default settings do: the same first ``steps`` steps from the same weights."""

    verdict: str  # same | within rounding | differs | reference | not checked
    steps: int
    rtol: float
    atol: float
    loss_max_rel: float | None = None  # the epoch's mean loss
    predictions_max_rel: float | None = None  # on the first batch, after the last step
    weights_max_abs: float | None = None  # every weight after the last step
    weights_max_rel: float | None = None
    weights_judged: bool = True  # False for mixed precision: reported, not judged
    message: str = ""
    # Where it left the tolerance: its worst difference over the noise floor (compare.floor), a step's or a quantity's.
    floor_ratio: float | None = None

    @property
    def kept(self) -> bool:
        return self.verdict in (SAME, WITHIN_ROUNDING, REFERENCE)


@dataclass
class TuneRow:
    """One setting on one backend, model and batch size."""

    backend: str
    model: str
    batch_size: int
    settings: dict  # a grid.Setting as a dict
    label: str
    status: str = "ok"  # ok | failed | not_applicable | skipped
    note: str = ""
    samples_per_sec: float | None = None  # median over the repeats
    samples_per_sec_min: float | None = None
    samples_per_sec_max: float | None = None
    ms_per_step: float | None = None
    first_step_s: float | None = None  # building the step and its first execution, compiling included
    peak_rss_mb: float | None = None  # the worker's high-water mark when the setting ended
    device_peak_mb: float | None = None  # accelerator memory, None on a CPU
    jit_resolved: str = ""  # what Keras made of jit_compile
    threads: int | None = None  # the intra-op thread count the framework reports
    parity: Parity | None = None
    speedup_vs_default: float | None = None
    native_ratio: float | None = None
    is_default: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_dict(cls, d: dict) -> TuneRow:
        known = {f.name for f in fields(cls)}
        row = cls(**{k: v for k, v in d.items() if k in known})
        if isinstance(row.parity, dict):
            row.parity = Parity(**row.parity)
        return row


@dataclass
class NativeRow:
    """The hand-written loop in the framework itself, for the models that have one."""

    backend: str
    model: str
    batch_size: int
    compiler: str
    status: str = "ok"
    note: str = ""
    samples_per_sec: float | None = None
    samples_per_sec_min: float | None = None
    samples_per_sec_max: float | None = None
    ms_per_step: float | None = None


@dataclass
class Profile:
    """Where an eager training step's time goes, each phase timed alone (ms per step, median).

    ``layer_call_ms`` is the Keras forward pass less the native loop's forward pass on the
    same layers: what calling through Keras's layers costs.
    """

    backend: str
    model: str
    batch_size: int
    forward_ms: float
    loss_and_backward_ms: float
    optimizer_ms: float
    metrics_ms: float
    host_sync_ms: float
    native_forward_ms: float | None = None
    native_step_ms: float | None = None

    @property
    def layer_call_ms(self) -> float | None:
        return None if self.native_forward_ms is None else self.forward_ms - self.native_forward_ms


@dataclass
class Best:
    """The fastest setting that kept parity, for one backend, model and batch size."""

    backend: str
    model: str
    batch_size: int
    settings: dict
    samples_per_sec: float
    speedup_vs_default: float | None
    native_ratio: float | None
    parity: str  # the winner's parity verdict: same, within rounding, or reference when the default won
    label: str = ""
    snippet: str = ""


@dataclass
class TuneReport:
    machine: Machine
    rows: list[TuneRow]
    best: list[Best]
    native: list[NativeRow] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    failures: list[WorkerFailure] = field(default_factory=list)
    parity_steps: int = 0
    tolerances: dict = field(default_factory=dict)  # dtype policy -> [rtol, atol]
    wall_s: float | None = None

    def __repr__(self) -> str:
        return display.text(self, "backendlab.tune.report:renderables")

    def _repr_html_(self) -> str:
        return display.html(self, "backendlab.tune.report:renderables")

    def to_dict(self) -> dict:
        d = to_jsonable(self)
        for profile, out in zip(self.profiles, d["profiles"]):
            out["layer_call_ms"] = profile.layer_call_ms
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TuneReport:
        def profile(p: dict) -> Profile:
            known = {f.name for f in fields(Profile)}
            return Profile(**{k: v for k, v in p.items() if k in known})

        return cls(
            machine=Machine(**d["machine"]),
            rows=[TuneRow.from_dict(r) for r in d["rows"]],
            best=[Best(**b) for b in d["best"]],
            native=[NativeRow(**n) for n in d.get("native", [])],
            profiles=[profile(p) for p in d.get("profiles", [])],
            failures=[WorkerFailure(**f) for f in d.get("failures", [])],
            parity_steps=d.get("parity_steps", 0),
            tolerances=d.get("tolerances", {}),
            wall_s=d.get("wall_s"),
        )
