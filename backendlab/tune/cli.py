"""``backendlab tune``: the fastest settings for a model on each backend, each proven to train the same.

This module imports no framework: the measuring happens in worker processes.
"""

from __future__ import annotations

import argparse

from backendlab.backends import BACKEND_NAMES
from backendlab.errors import UsageError
from backendlab.results import NUMBERED_HELP
from backendlab.runspec import comma_list, int_list, positive_float, positive_int
from backendlab.tune.grid import DTYPE_POLICIES, LOOPS


def _bools(text: str) -> tuple[bool, ...]:
    values = {"true": True, "on": True, "false": False, "off": False}
    items = comma_list(text)
    if any(item.lower() not in values for item in items):
        raise argparse.ArgumentTypeError(f"must be comma-separated true/false, got {text!r}")
    return tuple(values[item.lower()] for item in items)


def _threads(text: str) -> tuple[tuple[int | None, int | None], ...]:
    """``default,1/1,2/1``: intra/inter pairs (one number: the same for both)."""
    found = []
    for item in comma_list(text):
        if item == "default":
            found.append((None, None))
            continue
        parts = item.split("/")
        try:
            counts = tuple(int(p) for p in parts)
        except ValueError:
            counts = ()
        if len(counts) not in (1, 2) or min(counts, default=0) < 1:
            raise argparse.ArgumentTypeError(f"threads are default or INTRA/INTER counts like 1/1, got {item!r}")
        found.append((counts[0], counts[-1]))
    return tuple(found)


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        type=comma_list,
        default=("mlp",),
        help="comma-separated: mlp, cnn, rnn, transformer, or file.py:build",
    )
    parser.add_argument("--data", default=None, help="for a user model: file.py:function, a .npz, or a bundled dataset")
    parser.add_argument("--input-shape", type=int_list, default=None, help="for a user model without an Input")
    parser.add_argument("--batch-sizes", type=int_list, default=(256,), help="comma-separated (default: 256)")
    parser.add_argument(
        "--backends",
        type=comma_list,
        default=None,
        help=f"comma-separated, of {', '.join(BACKEND_NAMES)} (default: all)",
    )
    parser.add_argument("--jit-compile", type=_bools, default=(True, False), help="values tried (default: true,false)")
    parser.add_argument(
        "--steps-per-execution", type=int_list, default=(1, 32), help="values tried where allowed (default: 1,32)"
    )
    parser.add_argument(
        "--loops",
        type=comma_list,
        default=LOOPS,
        help="fit, trainstep, fit-wholestep (default: all; fit-wholestep where Keras's fit breaks its graph)",
    )
    parser.add_argument(
        "--threads", type=_threads, default=((None, None), (1, 1)), help="INTRA/INTER pairs (default: default,1/1)"
    )
    parser.add_argument(
        "--dtype-policies",
        type=comma_list,
        default=("float32", "mixed_bfloat16"),
        help=f"of {', '.join(DTYPE_POLICIES)}; mixed_float16 needs a GPU (default: float32,mixed_bfloat16)",
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed repeats per setting (default: 3)")
    parser.add_argument("--samples", type=positive_int, default=4096, help="samples per timed repeat (default: 4096)")
    parser.add_argument(
        "--parity-steps", type=positive_int, default=32, help="steps each setting is judged on (default: 32)"
    )
    parser.add_argument(
        "--budget-s",
        type=positive_float,
        default=None,
        help="seconds per backend; settings past it are recorded as skipped (default: no budget)",
    )
    parser.add_argument("--no-native", action="store_true", help="skip the native loops")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-step profile")
    parser.add_argument("--seed", type=int, default=0, help="data and starting weights (default: 0)")
    parser.add_argument(
        "--out",
        default="tune-out",
        metavar="DIR",
        help="where tune.json, tune.md, tune.png go (default: tune-out)" + NUMBERED_HELP,
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write tune.json here")


def options_from_args(args):
    from backendlab.runspec import RunSpec
    from backendlab.tune.grid import Grid
    from backendlab.tune.run import TuneOptions

    for name in args.backends or ():
        if name not in BACKEND_NAMES:
            raise UsageError(f"unknown backend {name!r}: valid backends are {', '.join(BACKEND_NAMES)}")
    for loop in args.loops:
        if loop not in LOOPS:
            raise UsageError(f"unknown loop {loop!r}: valid loops are {', '.join(LOOPS)}")
    for policy in args.dtype_policies:
        if policy not in DTYPE_POLICIES:
            raise UsageError(f"unknown dtype policy {policy!r}: valid are {', '.join(DTYPE_POLICIES)}")
    grid = Grid(
        jit_compile=args.jit_compile,
        steps_per_execution=tuple(dict.fromkeys((1, *args.steps_per_execution))),
        loops=args.loops,
        threads=args.threads,
        dtype_policies=args.dtype_policies,
    )
    return TuneOptions(
        models=args.models,
        backends=tuple(args.backends or BACKEND_NAMES),
        batch_sizes=args.batch_sizes,
        grid=grid,
        repeats=args.repeats,
        samples_per_repeat=args.samples,
        parity_steps=args.parity_steps,
        budget_s=args.budget_s,
        native=not args.no_native,
        profile=not args.no_profile,
        run=RunSpec(seed=args.seed, data=args.data),
        input_shape=args.input_shape,
    ).check()


def tune_with_bars(opts, out, *, json_path=None, console=None):
    """:func:`backendlab.tune.run.run_tune`, with one progress bar per worker on ``console`` (default: stderr)."""
    from rich.console import Console

    from backendlab.cli_display import ProgressBars
    from backendlab.tune.run import run_tune as tune

    with ProgressBars(console or Console(stderr=True), width=22) as bars:
        return tune(opts, out, json_path=json_path, on_progress=bars)


def run_tune(args) -> int:
    from rich.console import Console

    from backendlab.cli_display import print_summary
    from backendlab.results import check_writable, unused_folder
    from backendlab.tune.report import notes, rich_table

    opts = options_from_args(args)
    check_writable(args.out, "--out", folder=True)
    folder = unused_folder(args.out)
    report = tune_with_bars(opts, folder, json_path=args.json, console=Console(stderr=True))
    print_summary(Console(width=160), rich_table(report), notes(report), report.failures)
    Console(stderr=True).print(f"wrote {folder}/tune.json, tune.md, tune.png", markup=False, highlight=False)
    return 1 if report.failures else 0
