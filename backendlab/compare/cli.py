"""Command-line front of compare: arguments, a live progress display, the summary table."""

from __future__ import annotations

import argparse
import dataclasses

from backendlab.backends import BACKEND_NAMES
from backendlab.compare.locate import DEFAULT_THRESHOLD as DEFAULT_LOCATE_THRESHOLD
from backendlab.compare.locate import threshold_for
from backendlab.compare.results import DEFAULT_STAT_RTOL, DTYPE_TOLERANCES, CompareOptions
from backendlab.compare.run import Compare
from backendlab.export.formats import DEFAULT_ATOL as DEFAULT_EXPORT_ATOL
from backendlab.export.formats import FORMATS as EXPORT_FORMATS
from backendlab.results import NUMBERED_HELP
from backendlab.runspec import RunSpec, name_list, positive_float


def _export_list(text: str) -> list[str]:
    names = [] if text.strip() == "none" else name_list(text)
    unknown = [n for n in names if n not in EXPORT_FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown export format {unknown[0]!r}: use {', '.join(EXPORT_FORMATS)} or none"
        )
    return names


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    from backendlab.cli import add_training_arguments

    add_training_arguments(parser)
    parser.add_argument(
        "--backends",
        type=name_list,
        default=None,
        help=f"comma-separated (default: every installed one of {','.join(BACKEND_NAMES)})",
    )
    parser.add_argument("--reference", default=None, help="the backend the others are compared to (default: the first)")
    by_dtype = {name: ", ".join(f"{d} {t[i]:g}" for d, t in DTYPE_TOLERANCES.items()) for i, name in enumerate("ra")}
    parser.add_argument(
        "--rtol",
        type=positive_float,
        default=None,
        help="relative tolerance (default: by the dtype the model computes in: "
        f"{by_dtype['r']}; float32's as Keras's own cross-backend checks after training)",
    )
    parser.add_argument(
        "--atol",
        type=positive_float,
        default=None,
        help=f"absolute tolerance (default: {by_dtype['a']}); agree means |a - ref| <= atol + rtol*|ref| everywhere",
    )
    parser.add_argument(
        "--stat-rtol",
        type=positive_float,
        default=DEFAULT_STAT_RTOL,
        help="with layers drawing other numbers on each backend (--random backend, or drawing outside Keras): "
        f"relative tolerance on final-epoch and test metrics (default: {DEFAULT_STAT_RTOL:g})",
    )
    parser.add_argument(
        "--no-portability",
        dest="portability",
        action="store_false",
        help="skip loading each saved .keras file on every other backend",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="where a backend leaves the tolerance, do not train perturbed twins of the start to measure float32's "
        "noise floor (so no verdict 'agree within rounding')",
    )
    parser.add_argument(
        "--locate",
        action="store_true",
        help="take apart the step where each backend parts from the reference, even one that agrees "
        "(a diverging backend is always located)",
    )
    parser.add_argument(
        "--locate-threshold",
        type=positive_float,
        default=None,
        help="relative difference from which the locator names a place "
        f"(default: {DEFAULT_LOCATE_THRESHOLD:g}, about 100x float32 rounding; where the model computes in a "
        f"narrower dtype, 20 units of its rounding: {threshold_for('bfloat16'):.2g} for bfloat16)",
    )
    parser.add_argument(
        "--exports",
        type=_export_list,
        default=[],
        help=f"export each trained model in these formats ({','.join(EXPORT_FORMATS)}) and run each in its "
        "runtime against the model (default: none; needs the export extra)",
    )
    parser.add_argument(
        "--export-atol",
        type=positive_float,
        default=DEFAULT_EXPORT_ATOL,
        help=f"how close an export must predict to its model (default: {DEFAULT_EXPORT_ATOL:g})",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=900.0, help="seconds each worker may take (default: 900)"
    )
    parser.add_argument(
        "--out",
        default="compare-out",
        help="folder for report.json, report.md, loss_curves.png and each backend's files (default: compare-out)"
        + NUMBERED_HELP,
    )
    parser.epilog = (
        "Exit status: 0 every compared backend agrees, exactly or within rounding, and so does every saved model "
        "loaded elsewhere and every export; 1 a backend diverged or failed, or a saved model or an export did not "
        "agree (the portability and exports lines say which); 2 bad usage or nothing could run."
    )


def options_from_args(args) -> CompareOptions:
    """Every CompareOptions field from the flag of the same name; the run's own from RunSpec's flags."""
    own = {f.name: getattr(args, f.name) for f in dataclasses.fields(CompareOptions) if f.name != "run"}
    return CompareOptions(run=RunSpec.from_args(args), **own)


class CompareBars:
    """An ``on_event`` callback for :class:`Compare` drawing one bar per worker's job on ``console``; a context."""

    def __init__(self, console):
        from backendlab.cli_display import bars

        self.progress = bars(console, "[bold]{task.description:<12}", "{task.fields[stage]}", transient=True)
        self.tasks: dict[tuple[str, str], int] = {}

    def __enter__(self) -> CompareBars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, backend: str, stage: str, info: dict) -> None:
        from backendlab.workers.processes import signals_held

        # A Ctrl-C waits until the display is updated: raised inside rich's lock, it could leave it held.
        with signals_held():
            self.show(backend, stage, info)

    def show(self, backend: str, stage: str, info: dict) -> None:
        progress, tasks = self.progress, self.tasks
        key = (
            (backend, info.get("kind", ""))
            if stage == "start"
            else next((k for k in reversed(tasks) if k[0] == backend), (backend, ""))
        )
        if stage == "start":
            kinds = {"train": backend, "import": f"{backend} import", "export": f"{backend} export"}
            label = kinds.get(info["kind"], f"{backend} twin" if info["kind"] == "twin" else f"{backend} load")
            tasks[key] = progress.add_task(label, total=None, stage="starting worker")
        elif stage == "progress" and key in tasks:
            progress.update(
                tasks[key], total=info.get("total") or None, completed=info.get("done", 0), stage=info.get("stage", "")
            )
        elif stage == "end" and key in tasks:
            progress.update(tasks[key], stage=info["status"] + (f": {info['message'][:60]}" if info["message"] else ""))
            progress.stop_task(tasks[key])


def compare_with_bars(opts: CompareOptions, console, *, pool=None, env=None):
    """:class:`Compare` run with its bars on ``console``; the report, and the folder its files are in."""
    bars = CompareBars(console)
    runner = Compare(opts, on_event=bars, pool=pool, env=env)
    with bars:
        return runner.run(), runner.out


def run_compare(args) -> int:
    from backendlab.cli import console, out
    from backendlab.compare.report import renderables
    from backendlab.results import check_writable, unused_folder, write_json

    if args.json is not None:
        check_writable(args.json, "--json")  # before any worker starts
    args.out = str(unused_folder(args.out))  # a folder that already holds files is kept: DIR-2, DIR-3, ...
    report, folder = compare_with_bars(options_from_args(args), console)
    for shown in renderables(report):  # the lines as they are; the table as rich draws it
        out.print(shown, markup=False, highlight=False) if isinstance(shown, str) else out.print(shown)
    out.print(f"report: {folder / 'report.md'}, {folder / 'report.json'}, {folder / 'loss_curves.png'}")
    if args.json:
        write_json(args.json, report)
    return report.exit_code
