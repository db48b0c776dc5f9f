"""How a result shows itself where a user looks at it: its ``repr`` in a terminal, its HTML in Jupyter.

Both are the lines and tables the command line prints, drawn by the feature's ``report`` module from
the result alone. A result names its drawing function as ``"module:function"`` (the report module
imports the results module, so the results cannot import it back); the function returns the rich
renderables, in order. ``figure`` names, where there is one, a function returning a PNG (bytes or
None) that the HTML shows inline after the tables.
"""

from __future__ import annotations

import base64
import importlib
import io
import shutil
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

PRE = (
    "<pre style=\"font-family:Menlo,'DejaVu Sans Mono',Consolas,'Courier New',monospace;line-height:1.3\">{code}</pre>"
)
#: Columns an HTML table, or a repr outside a terminal, is drawn in: the command line's when it prints to a file.
WIDTH = 160


def _function(name: str):
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


def _recorded(result: Any, drawn_by: str, width: int = WIDTH) -> Console:
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=False, force_jupyter=False)
    for shown in _function(drawn_by)(result):  # lines as they are (no markup), tables as the command draws them
        console.print(shown, markup=False, highlight=False, soft_wrap=True) if isinstance(
            shown, str
        ) else console.print(shown)
    return console


def text(result: Any, drawn_by: str) -> str:
    """What the command line prints for ``result``, as plain text: the result's ``__repr__``."""
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else WIDTH  # as the command line draws it
    return _recorded(result, drawn_by, width).export_text().rstrip("\n")


def html(result: Any, drawn_by: str, figure: str | None = None) -> str:
    """The same as HTML, styles inline, with the figure (where there is one) as an embedded PNG: ``_repr_html_``."""
    page = _recorded(result, drawn_by).export_html(inline_styles=True, code_format=PRE)
    png = _function(figure)(result) if figure else None
    if png:
        data = base64.b64encode(png).decode("ascii")
        page += f'<img src="data:image/png;base64,{data}" alt="{type(result).__name__}" style="max-width:100%"/>'
    return f'<div class="backendlab-result">{page}</div>'


def summary(table: Any, notes: list[str], failures: list) -> list:
    """What bench and tune print once done: the table, its notes, and each worker that failed, in red."""
    failed = [Text.assemble((f"{f.backend}: worker {f.status}", "red"), f": {f.message}") for f in failures]
    return [table, *notes, *failed]
