"""What a compare run is asked and what it produces, as dataclasses that serialize to JSON.

The terminal table, ``report.md`` and ``loss_curves.png`` are all drawn from a
:class:`CompareReport`; nothing is drawn from live state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from backendlab import display
from backendlab.compare.diff import EPSILON, Diff
from backendlab.export.formats import DEFAULT_ATOL as DEFAULT_EXPORT_ATOL
from backendlab.results import NonFinite
from backendlab.runspec import RunSpec

#: Keras's own cross-backend checks use 1e-3 after training; so do we, by default, for float32.
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-3

#: The default (rtol, atol) for each compute dtype. A mixed precision policy computes in a narrower
#: dtype, which rounds every operation to its epsilon (bfloat16 7.8e-3, float16 9.8e-4), and training
#: carries those roundings from step to step. rtol is two units of it (bfloat16 1.6e-2, which is also
#: torch.testing.assert_close's; float16 2e-3), atol a little over one (1e-2, 1e-3): a value near zero
#: computed from numbers of order one carries their rounding. Never tighter than float32's.
DTYPE_TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (DEFAULT_RTOL, DEFAULT_ATOL),
    "float16": (2e-3, 1e-3),
    "bfloat16": (1.6e-2, 1e-2),
}

#: The verdict of a backend outside the tolerance but within the noise floor (backendlab.compare.floor).
AGREE_ROUNDING = "agree within rounding"
#: With stochastic layers on, only final metrics can be compared, and loosely.
DEFAULT_STAT_RTOL = 0.1

#: How a stochastic layer drew in training: from the one portable generator (the same numbers on every
#: backend), from each backend's own (--random backend), from its framework's own generator outside
#: Keras's random ops (torch.rand, tf.random: no flag reaches it), or not at all (--disable-stochastic).
PORTABLE, BACKEND, OUTSIDE, OFF = "portable", "backend", "outside Keras", "off"
#: The marks whose layers draw other numbers on each backend: they leave only a statistical verdict.
STATISTICAL_MARKS = (BACKEND, OUTSIDE)


def stochastic_marks(layers: list[str], outside: list[str], random: str, disabled: bool) -> dict[str, str]:
    """Each stochastic layer's mark (see :data:`PORTABLE`): ``random`` is the run's --random."""
    if disabled:
        return dict.fromkeys(layers, OFF)
    return {name: OUTSIDE if name in outside else PORTABLE if random == "portable" else BACKEND for name in layers}


@dataclass
class CompareOptions:
    """One compare run: the training run every backend does, and how they are compared."""

    run: RunSpec = field(default_factory=RunSpec)
    backends: list[str] | None = None  # None: every installed backend
    reference: str | None = None  # None: the first that can run
    rtol: float | None = None  # None: the compute dtype's default (DTYPE_TOLERANCES)
    atol: float | None = None
    stat_rtol: float = DEFAULT_STAT_RTOL
    portability: bool = True  # load every saved .keras file on every backend
    # Where a backend leaves the tolerance, train perturbed twins to measure the noise floor (compare.floor).
    floor: bool = True
    locate: bool = False  # locate where every backend parts from the reference, not only the diverging ones
    locate_threshold: float | None = None  # None: the compute dtype's (compare.locate.threshold_for)
    # Export each trained model in these formats and run it in its runtime (with portability on). Off by
    # default: the converters take tens of seconds (jax2onnx about 20 s on 2 cores), longer than the seed's training.
    exports: list[str] = field(default_factory=list)
    export_atol: float = DEFAULT_EXPORT_ATOL
    timeout: float = 900.0  # seconds per worker
    out: str = "compare-out"

    @classmethod
    def from_keywords(cls, **options) -> CompareOptions:
        """``compare(model="cnn", epochs=3, out=...)``: RunSpec fields and compare's own, in one call."""
        run_fields = {f.name for f in dataclasses.fields(RunSpec)}
        run = RunSpec(**{k: v for k, v in options.items() if k in run_fields})
        return cls(run=run, **{k: v for k, v in options.items() if k not in run_fields})

    def settings(self) -> dict:
        """What the report records: the run's settings and the comparison's, flat."""
        mine = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("run", "out")}
        return {**self.run.to_dict(), **mine}


def loosest(dtypes) -> str:
    """Of the dtypes a model computes in, the one that rounds most (the largest epsilon); float32 if none is known."""
    known = [d for d in dtypes or () if d in EPSILON]
    return max(known, key=EPSILON.__getitem__, default="float32")


def tolerances_for(compute_dtype: str) -> tuple[float, float]:
    """The default (rtol, atol) for a compute dtype; float32's for float64 and any dtype not in the table."""
    return DTYPE_TOLERANCES.get(compute_dtype, DTYPE_TOLERANCES["float32"])


@dataclass
class Criterion:
    """How the backends were held to the reference, and why to those tolerances."""

    # exact | statistical (layers drawing other numbers on each backend: final and test metrics within stat_rtol decide)
    kind: str
    rtol: float
    atol: float
    stat_rtol: float
    dtype_policy: str | None  # the model's dtype policy as its workers reported it; None when none trained
    compute_dtype: str  # the least precise dtype its layers compute in: its defaults are used
    given: list[str] = field(default_factory=list)  # the tolerances given as flags (rtol, atol); the rest default

    @classmethod
    def resolve(cls, kind: str, opts: CompareOptions, dtype_policy: str | None, compute_dtypes) -> Criterion:
        """The tolerances given, else the defaults of the least precise dtype the model computes in."""
        compute = loosest(compute_dtypes)
        rtol, atol = tolerances_for(compute)
        given = [name for name in ("rtol", "atol") if getattr(opts, name) is not None]
        return cls(
            kind,
            opts.rtol if opts.rtol is not None else rtol,
            opts.atol if opts.atol is not None else atol,
            opts.stat_rtol,
            dtype_policy,
            compute,
            given,
        )

    @property
    def source(self) -> str:
        """Where rtol and atol came from, in words."""
        if len(self.given) == 2:
            return "given"
        defaults = f"the {self.compute_dtype} default"
        return f"{self.given[0]} given, the other {defaults}" if self.given else f"{defaults}s"


@dataclass
class BackendReport:
    backend: str
    status: str  # ok | skipped | failed | crashed | timeout | nonfinite | not run
    verdict: str | None = None  # agree | agree within rounding | diverge; None where there is nothing to compare
    message: str = ""
    framework_version: str | None = None
    initial_checksum: str | None = None
    train_time_s: float | None = None
    import_s: float | None = None  # its worker's import of Keras and the framework; 0 when it was warm already
    history: dict = field(default_factory=dict)
    step_losses: list = field(default_factory=list)
    test: dict = field(default_factory=dict)
    differences: dict[str, Diff] = field(default_factory=dict)
    first_divergent_step: int | None = None
    nonfinite_step: int | None = None
    log_tail: str = ""
    nonfinite: NonFinite | None = None  # what went NaN or inf first, when, and how; status nonfinite
    # Where its training step first parts from the reference's (compare.locate.Divergence as a dict),
    # and each phase's largest differences in that step; None where it was not located.
    divergence: dict | None = None
    divergence_phases: list = field(default_factory=list)
    # The layers whose outputs the probe recorded, and those it could not reach (a recurrent layer's cell).
    divergence_layers: dict = field(default_factory=dict)
    # Outside the tolerance: its difference to the reference per step beside the noise floor its and the
    # reference's perturbed twins measured (compare.floor.Floor as a dict); None where no twins ran.
    floor: dict | None = None
    # How many times training grew a 1-ulp change of the start on this backend (compare.floor); None: no twins.
    amplification: float | None = None

    @classmethod
    def from_dict(cls, d: dict) -> BackendReport:
        """As read back from ``report.json``, where every NaN and infinity became null."""
        d = {**d, "differences": {k: Diff(**v) for k, v in d.get("differences", {}).items()}}
        return cls(**{**d, "nonfinite": NonFinite.from_dict(d.get("nonfinite"))})


@dataclass
class CompareReport:
    # agree | agree within rounding | diverge | failed | incomplete | nondeterministic (the batches differed)
    verdict: str
    reference: str | None
    settings: dict  # rtol and atol as applied; batch_size, optimizer and learning_rate as they ran
    criterion: Criterion
    stochastic_layers: list[str]
    notes: list[str]
    keras_version: str | None
    backends: dict[str, BackendReport]
    # saver -> loader (a backend, or an export format) -> {"status", "max_abs", ...}
    portability: dict[str, dict[str, dict]]
    numpy_reference: dict[str, dict]  # backend -> Diff of its starting predictions vs numpy
    # wall_s; import_s and train_s per backend; imports_wall_s; overhead_s: see Compare.timing
    timing: dict = field(default_factory=dict)
    # The exports' own verdict (agree, diverge, failed), apart from training's; None when none was checked.
    export_verdict: str | None = None
    # The saved .keras files' own verdict, loaded on every backend (agree, diverge, could not load, failed),
    # apart from training's; None when none was loaded (--no-portability).
    portability_verdict: str | None = None
    # Every step's batch checksummed on every backend (compare.facts.batches_proof): identical,
    # first_differing_step, kind (arrays, tf.data, DataLoader, PyDataset, generator), steps, message.
    batches: dict = field(default_factory=dict)
    # The shared start as the backend that drew it made it (compare.facts.shared_start): made_by, and the
    # variable paths it drew portably (drawn), kept as the model's build left them (kept: adapt, set_weights,
    # load_weights, ...) or left at its backend's own value (fallback); empty where none drew it.
    start: dict = field(default_factory=dict)
    # The one backend that differs from all the others (compare.verdict.odd_one_out): backend, agreeing,
    # by (majority, or numpy: Keras's numpy backend's starting predictions), message; {} where none is alone.
    # Where it is the reference asked for, ``reference`` is the first agreeing backend instead.
    odd_one_out: dict = field(default_factory=dict)
    # What really ran, as the workers reported it (compare.facts.ran_facts): the model's compile, its
    # batches, dtype policy, devices and processes; loop and jit_compile per backend.
    ran: dict = field(default_factory=dict)
    # The run's --random (a report from before it existed ran each backend's own generators), and how each
    # of stochastic_layers drew (results.stochastic_marks: portable, backend, outside Keras, off).
    random: str = "backend"
    stochastic_marks: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return display.text(self, "backendlab.compare.report:renderables")

    def _repr_html_(self) -> str:
        return display.html(self, "backendlab.compare.report:renderables", "backendlab.compare.report:loss_curves_png")

    @property
    def exit_code(self) -> int:
        """0 where training agrees (exactly or within rounding) and every saved model and export checked agrees
        too; else 1."""
        checks = (self.portability_verdict or "agree", self.export_verdict or "agree")
        return 0 if self.verdict in ("agree", AGREE_ROUNDING) and all(v == "agree" for v in checks) else 1

    @classmethod
    def from_dict(cls, d: dict) -> CompareReport:
        """A report read back from ``report.json``: the table, markdown and plot draw it as they drew the original."""
        backends = {k: BackendReport.from_dict(v) for k, v in d["backends"].items()}
        return cls(**{**d, "backends": backends, "criterion": Criterion(**d["criterion"])})
