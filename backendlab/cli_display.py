"""What the command-line modules draw: progress bars and summaries; the orchestrators below them draw nothing.

An orchestrator reports progress through its ``on_progress(name, stage, done=None, total=None,
failed=False)`` argument: ``name`` is one worker's bar (made the first time it is named), ``done``
of ``total`` its progress, ``stage`` what it does now, ``failed`` whether that is how it ended.
:class:`ProgressBars` is such a callback that draws the bars with rich.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def bars(console: Console, label: str, status: str, *, transient: bool, disable: bool = False) -> Progress:
    """A rich Progress with one look for every command: ``label``, the bar, done of total, ``status``, time."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(status),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )


class ProgressBars:
    """An ``on_progress`` callback drawing one bar per name on ``console``, its names ``width`` wide; a context."""

    def __init__(self, console: Console, width: int):
        self.progress = bars(console, f"{{task.description:<{width}}}", "{task.fields[stage]}", transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> ProgressBars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(
        self, name: str, stage: str, done: int | None = None, total: int | None = None, failed: bool = False
    ) -> None:
        stage = f"[red]{stage}" if failed else stage
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, completed=done or 0, stage=stage)
            return
        fields = {"completed": done} if done is not None else {}
        if total is not None:
            fields["total"] = total
        self.progress.update(self.tasks[name], stage=stage, **fields)


def print_summary(console: Console, table, notes: Iterable[str], failures) -> None:
    """A report's table, its notes, and each worker that failed (:func:`backendlab.display.summary`)."""
    from backendlab.display import summary

    console.print(table)
    for shown in summary(table, list(notes), failures)[1:]:
        console.print(shown, markup=False, highlight=False)
