"""The ``backendlab`` command: info, train, compare, bench, tune, export, check-layer.

A bare ``backendlab`` prints its help, commands and all, and runs nothing. Bad usage prints one line,
``backendlab: error: ...``, and exits 2, with no traceback; so does training that goes NaN or inf,
which exits 1 (the input was fine, the run failed).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from backendlab.backends import (
    BACKENDS,
    check_backend_variable,
    check_device_count,
    ensure_backend,
    impl,
    launch_command,
    requested_backend_name,
)
from backendlab.errors import BackendlabError, NonFiniteError
from backendlab.native_logs import quiet_framework_imports
from backendlab.runspec import RunSpec, add_run_arguments, given_fields
from backendlab.workers.ranks import is_main_process, launched, leave_now, note_rank, one_of_processes
from backendlab.workers.threads import worker_env

console = Console(stderr=True)
# Tables are wide; when stdout is not a terminal (a log, a pipe) do not squeeze them to 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=160)

#: Each subcommand: the module that defines its ``add_<name>_arguments`` and ``run_<name>``, and its help.
SUBCOMMANDS = {
    "info": ("backendlab.cli", "Every backend, installed or not, with versions; the active one marked."),
    "train": ("backendlab.cli", "Train a model on the backend KERAS_BACKEND names (default: the seed's MLP)."),
    "compare": ("backendlab.compare.cli", "Train on every backend from the same weights and batches; compare."),
    "bench": ("backendlab.bench.cli", "Throughput of each backend against native loops and the matmul peak."),
    "tune": ("backendlab.tune.cli", "The fastest settings per backend for a model, each proven to train the same."),
    "export": ("backendlab.export.cli", "Export a saved .keras model as ONNX or a SavedModel; --check runs it."),
    "check-layer": ("backendlab.layers.cli", "Check that a layer computes the same on every backend."),
}


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The run's settings, one flag per RunSpec field, and ``--json``: what ``train`` and ``compare`` share."""
    add_run_arguments(parser)
    parser.add_argument("--json", default=None, metavar="PATH", help="write the result as JSON")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No abbreviated flags: `train --resume` tells the flags given by their full names.
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):  # one line, exit 2
        self.exit(2, f"backendlab: error: {message}\n")


#: What ``backendlab --help`` says first: plain text, as a terminal shows it.
DESCRIPTION = (
    "Train one Keras 3 model on TensorFlow, JAX and PyTorch; prove it trains the same; measure how fast. "
    "Run `backendlab COMMAND --help` for a command's options."
)


def build_parser() -> argparse.ArgumentParser:
    from backendlab import __version__

    parser = _Parser(prog="backendlab", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"backendlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        getattr(importlib.import_module(module), f"add_{name.replace('-', '_')}_arguments")(p)
    return parser


# --- info -----------------------------------------------------------------------------


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run_info(args) -> int:
    import importlib.metadata as md

    active = requested_backend_name()
    chosen = os.environ.get("KERAS_BACKEND", "<unset>")
    table = Table(title=f"backendlab backends (keras {md.version('keras')}, KERAS_BACKEND={chosen})")
    for col in ("", "backend", "framework", "version", "compiles with", "steps_per_execution"):
        table.add_column(col)
    for b in BACKENDS.values():
        version = b.framework_version if b.installed else "not installed"
        table.add_row(
            "*" if b.name == active else "",
            b.name,
            b.framework,
            version,
            b.compiler,
            "yes" if b.steps_per_execution else "no (raises)",
        )
    out.print(table)
    for b in BACKENDS.values():
        if not b.installed:
            out.print(f"{b.name}: not installed: {b.install_hint}", markup=False, highlight=False, soft_wrap=True)
    if active in BACKENDS and BACKENDS[active].installed:
        from backendlab.training.info import backend_info

        info = backend_info()
        out.print(
            f"active: {info.backend} ({info.framework} {info.framework_version}), devices: {', '.join(info.devices)}"
        )
    else:
        out.print(f"active: {active} is not usable here")
    return 0


# --- train ----------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)
    parser.add_argument(
        "--save", default=None, metavar="PATH.keras", help="save the trained model (with its optimizer state)"
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="PATH.keras",
        help="continue training a saved model (from any backend) where it stopped",
    )


def result_title(result) -> str:
    """The line above the train summary: what trained, on what."""
    info = result.info
    return (
        f"{result.config.model} on {result.config.data}, backend {result.backend} "
        f"({info.framework} {info.framework_version}, keras {info.keras_version})"
    )


def result_table(result) -> Table:
    table = Table()
    table.add_column("epoch")
    keys = summary_order(result.history)
    for key in keys:
        table.add_column(key, justify="right")
    for epoch in range(result.config.epochs):
        table.add_row(str(result.config.initial_epoch + epoch + 1), *(f"{result.history[k][epoch]:.6f}" for k in keys))
    return table


def summary_order(values: dict) -> list[str]:
    """The loss first, then the metrics by name: the same columns in the same order on every backend (JAX's
    history lists ``accuracy`` before ``loss``, PyTorch's after it)."""
    return sorted(values, key=lambda name: (name != "loss", name))


def result_caption(result) -> str:
    """The line under the train summary: the test metrics, the time taken and where training started."""
    start = f"resumed after epoch {result.config.initial_epoch}" if result.config.initial_epoch else result.config.init
    return (
        "test: "
        + ", ".join(f"{k}={result.test[k]:.4f}" for k in summary_order(result.test))
        + f"; training took {result.train_time_s:.2f}s; start checksum {result.start_checksum} ({start})"
    )


#: After Ctrl-C or SIGTERM, how long torchrun has to stop its ranks before they are killed.
LAUNCHER_GRACE_S = 5.0


def train_spec(args) -> RunSpec:
    """The run the arguments ask for, checked: names, files, and where the results go, before any framework."""
    from backendlab.data import check_data
    from backendlab.models import check_model
    from backendlab.results import check_writable
    from backendlab.training.files import check_resume_path, check_save_path, resumed_spec

    if args.save is not None:
        check_save_path(args.save)
    if args.json is not None:
        check_writable(args.json, "--json")
    spec = RunSpec.from_args(args)
    if args.resume is not None:  # the run saved in the file, with the flags given here on top
        check_resume_path(args.resume)
        spec = resumed_spec(args.resume, spec, given_fields(args.argv))
    spec.check()
    check_model(spec.model)
    check_data(spec.data)
    return spec


def train_here(spec: RunSpec, *, resume=None, save=None, json_path=None, main_process: bool = True, shown=None):
    """Train ``spec`` in this process, with a progress bar on ``shown`` (default: stderr); the TrainResult.

    The main process saves the model and writes the JSON; the others of a multi-process run only train."""
    from backendlab.cli_display import bars
    from backendlab.results import write_json
    from backendlab.training.files import save_model, trained_spec
    from backendlab.training.loops import train
    from backendlab.training.preparation import prepare
    from backendlab.training.schedule import epoch_steps

    shown = shown or console
    with shown.status(f"building {spec.model} on {ensure_backend().name}"):
        prep = prepare(spec, resume=resume)
    total = spec.epochs * epoch_steps(prep.config, prep.data)
    with bars(
        shown, "[bold]{task.description}", "loss {task.fields[loss]:.4f}", transient=True, disable=not main_process
    ) as progress:
        task = progress.add_task(f"train {spec.model} ({prep.config.loop})", total=total, loss=float("nan"))
        try:
            result = train(prep, on_step=lambda step, loss: progress.update(task, completed=step, loss=loss))
        except NonFiniteError as exc:
            # The model is not worth keeping; the run up to the bad step is, for whoever asked for --json.
            if json_path and main_process:
                write_json(json_path, exc.result.to_dict())
                raise NonFiniteError(f"{exc}; stopped, model not saved; the run so far is in {json_path}") from None
            raise NonFiniteError(f"{exc}; stopped, nothing saved") from None
    if main_process and save:
        result.saved_model = str(save_model(prep.model, save, trained_spec(prep)))
    if main_process and json_path:
        write_json(json_path, result.to_dict())
    return result


def train_renderables(result) -> list:
    """What ``backendlab train`` prints once trained: the table, and a note on the start where there is one."""
    # The title and caption are lines of their own, wrapped by the terminal: as the table's they were folded
    # to the table's width, names cut mid-word.
    note = [f"note: {result.start_note}"] if result.start_note else []
    return [result_title(result), result_table(result), result_caption(result), *note]


def run_train(args) -> int:
    spec = train_spec(args)
    backend = ensure_backend()
    several = spec.processes > 1 or (spec.devices > 1 and backend.launcher)
    if backend.module not in sys.modules:  # BACKENDLAB_THREADS, as a worker gets it (called from Python: as it is)
        os.environ.update(worker_env(spec.processes * (spec.devices if backend.launcher else 1)))
    if several and not launched():
        # One process per device, or per simulated host: check there are enough, start them; rank 0 reports.
        if spec.processes > 1:  # one device each: a core each here (the framework is not imported before the fork)
            check_device_count(spec.processes, 0)
        else:
            impl(backend).check_devices(spec.devices)
        from backendlab.workers.processes import ProcessTree

        # Unset, torchrun sets OMP_NUM_THREADS to 1 for its ranks and says so in a banner: set it as it would.
        env = {"OMP_NUM_THREADS": "1", **os.environ} if backend.launcher else None
        launcher = ProcessTree(launch_command(backend, spec.devices, "backendlab", args.argv, spec.processes), env=env)
        try:
            return launcher.proc.wait()
        finally:
            # Ctrl-C or SIGTERM: torchrun passes SIGTERM on to every rank; what is left after the grace is killed.
            launcher.stop(grace_s=LAUNCHER_GRACE_S)
    main_process = is_main_process()
    result = train_here(spec, resume=args.resume, save=args.save, json_path=args.json, main_process=main_process)
    if not main_process:  # the other ranks of a multi-process run trained the same model
        return 0
    for shown in train_renderables(result):
        out.print(shown, markup=False, highlight=False, soft_wrap=True) if isinstance(shown, str) else out.print(shown)
    written = [path for path in (result.saved_model, args.json) if path]
    if written:
        out.print(f"wrote {', '.join(written)}", markup=False, highlight=False, soft_wrap=True)
    return 0


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    quiet_framework_imports()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # what it can do, rather than a run nobody asked for
        parser.print_help()
        return 0
    if argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        parser.error(
            f"name a command before its options, e.g. backendlab train {' '.join(argv)} "
            f"(commands: {', '.join(SUBCOMMANDS)})"
        )
    args = parser.parse_args(argv)
    args.argv = argv
    command = args.command
    # A plain `kill` must clean up like Ctrl-C does: workers killed, finished results kept.
    signal.signal(signal.SIGTERM, _terminate)
    if launched():  # a rank torchrun (or --processes) started: it must not outlive its launcher
        from backendlab.workers.processes import die_with_orchestrator

        die_with_orchestrator()
        note_rank()
    module = importlib.import_module(SUBCOMMANDS[command][0])
    code = _run(module, command, args)
    if code and one_of_processes():
        leave_now(code)
    return code


def _run(module, command: str, args) -> int:
    try:
        if command != "info":  # info shows what KERAS_BACKEND says, usable or not
            check_backend_variable()
        return getattr(module, f"run_{command.replace('-', '_')}")(args)
    except NonFiniteError as exc:  # the run itself failed, not its input: exit 1, as compare does
        if is_main_process():
            console.print(f"backendlab: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except BackendlabError as exc:
        if is_main_process():  # under torchrun, one rank speaks for all
            console.print(f"backendlab: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        if not launched():  # a rank's interruption is told by the process the user started
            console.print("backendlab: interrupted", markup=False)
        return 130
    except Exception:
        if not one_of_processes():
            raise
        traceback.print_exc()  # one of --processes: the launcher quotes its last line
        return 1
