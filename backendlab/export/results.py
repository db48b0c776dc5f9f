"""What ``backendlab export`` produces: the file or folder written and, with ``--check``, how it predicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backendlab import display


@dataclass
class ExportResult:
    model: str  # the .keras file exported
    format: str  # onnx | tf_saved_model
    backend: str  # the backend that loaded and exported it
    path: str  # what was written
    # With --check: the data its test split came from, how many rows, and how the export predicted on them
    # (status agree | diverge | failed, the largest absolute difference to the model, the failure's message).
    data: str | None = None
    rows: int | None = None
    status: str | None = None
    max_abs: float | None = None
    message: str = ""
    atol: float | None = None
    rtol: float | None = None

    @property
    def exit_code(self) -> int:
        """0 where the export was written and agrees with the model, or was not checked; else 1."""
        return 0 if self.status in (None, "agree") else 1

    def line(self) -> str:
        """The line ``backendlab export`` prints: where it wrote, and how the export predicts where checked."""
        where = f"{self.format} export of {Path(self.model).name} ({self.backend}) at {self.path!r}"
        if self.status is None:
            return f"wrote {where}"
        rows = f"{self.rows} test rows of {self.data}"
        tolerance = f"atol={self.atol:g}, rtol={self.rtol:g}"
        if self.status == "agree":
            return f"ok: {where} predicts as the model does on {rows}: max abs difference {self.max_abs:.3g} " + (
                f"({tolerance})"
            )
        if self.status == "diverge":
            return (
                f"{where} predicts differently from the model on {rows}: max abs difference "
                f"{self.max_abs:.3g} is outside {tolerance}"
            )
        return f"{where} could not be checked: {self.message}"

    def __repr__(self) -> str:
        return display.text(self, "backendlab.export.results:renderables")

    def _repr_html_(self) -> str:
        return display.html(self, "backendlab.export.results:renderables")


def renderables(result: ExportResult) -> list[str]:
    return [result.line()]
