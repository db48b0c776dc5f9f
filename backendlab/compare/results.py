"""What a compare run is asked and what it produces, as dataclasses that serialize to JSON.

The terminal table, ``report.md`` and ``loss_curves.png`` are all drawn from a
:class:`CompareReport`; nothing is drawn from live state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from backendlab.compare.diff import Diff
from backendlab.compare.locate import DEFAULT_THRESHOLD as DEFAULT_LOCATE_THRESHOLD
from backendlab.export.formats import DEFAULT_ATOL as DEFAULT_EXPORT_ATOL
from backendlab.results import NonFinite
from backendlab.runspec import RunSpec

#: Keras's own cross-backend checks use 1e-3 after training; so do we, by default.
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-3
#: The verdict of a backend outside the tolerance but within the noise floor (backendlab.compare.floor).
AGREE_ROUNDING = "agree within rounding"
#: With stochastic layers on, only final metrics can be compared, and loosely.
DEFAULT_STAT_RTOL = 0.1


@dataclass
class CompareOptions:
    """One compare run: the training run every backend does, and how they are compared."""

    run: RunSpec = field(default_factory=RunSpec)
    backends: list[str] | None = None  # None: every installed backend
    reference: str | None = None  # None: the first that can run
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    stat_rtol: float = DEFAULT_STAT_RTOL
    portability: bool = True  # load every saved .keras file on every backend
    # Where a backend leaves the tolerance, train perturbed twins to measure the noise floor (compare.floor).
    floor: bool = True
    locate: bool = False  # locate where every backend parts from the reference, not only the diverging ones
    locate_threshold: float = DEFAULT_LOCATE_THRESHOLD
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
    settings: dict
    criterion: str  # exact | statistical
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
    # Every step's batch checksummed on every backend (compare.verdict.batches_proof): identical,
    # first_differing_step, kind (arrays, tf.data, DataLoader, PyDataset, generator), steps, message.
    batches: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict in ("agree", AGREE_ROUNDING) else 1

    @classmethod
    def from_dict(cls, d: dict) -> CompareReport:
        """A report read back from ``report.json``: the table, markdown and plot draw it as they drew the original."""
        return cls(**{**d, "backends": {k: BackendReport.from_dict(v) for k, v in d["backends"].items()}})
