"""``backendlab bench``: throughput of each backend against native loops and the matmul peak.

Options start from a named preset (``--preset``, ``--quick``) and override its fields.
This module imports no framework: the measuring happens in worker processes.
"""

from __future__ import annotations

import argparse

from backendlab.backends import BACKEND_NAMES
from backendlab.bench.presets import PRESETS, Preset, get_preset
from backendlab.errors import UsageError
from backendlab.results import NUMBERED_HELP
from backendlab.runspec import comma_list, int_list

MODES = ("fit", "predict")
JIT = ("auto", "true", "false")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", default="full", choices=sorted(PRESETS), help="the settings to start from (default: full)"
    )
    parser.add_argument("--quick", action="store_true", help="same as --preset quick (under 3 minutes on 2 cores)")
    parser.add_argument(
        "--models",
        type=comma_list,
        default=None,
        help="comma-separated: mlp, cnn, rnn, transformer, or path/to/file.py:build (default: the preset's)",
    )
    parser.add_argument(
        "--backends",
        type=comma_list,
        default=None,
        help=f"comma-separated, of {', '.join(BACKEND_NAMES)} (default: all)",
    )
    parser.add_argument("--batch-sizes", type=int_list, default=None, help="comma-separated (default: the preset's)")
    parser.add_argument("--modes", type=comma_list, default=None, help="comma-separated: fit, predict (default: both)")
    parser.add_argument("--repeats", type=int_list, default=None, help="timed repeats per cell (default: the preset's)")
    parser.add_argument(
        "--samples", type=int_list, default=None, help="samples per timed repeat (default: the preset's)"
    )
    parser.add_argument(
        "--steps-per-execution",
        type=int_list,
        default=None,
        help="comma-separated; values > 1 are recorded as not applicable on torch (default: the preset's)",
    )
    parser.add_argument(
        "--jit-compile", type=comma_list, default=None, help="comma-separated: auto, true, false (default: auto)"
    )
    parser.add_argument(
        "--threads", type=int_list, default=None, help="intra-op threads (default: each framework's own)"
    )
    parser.add_argument(
        "--pipelines",
        type=comma_list,
        default=None,
        help="what fit reads: arrays, tf.data, DataLoader, PyDataset, generator (default: arrays)",
    )
    parser.add_argument("--no-native", action="store_true", help="skip the native PyTorch/JAX/TensorFlow loops")
    parser.add_argument(
        "--input-shape", type=int_list, default=None, help="for a user model without an Input, e.g. 32,32,3"
    )
    parser.add_argument("--data", default=None, help="for a user model: file.py:function, a .npz, or a bundled dataset")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per backend worker (default: the preset's)"
    )
    parser.add_argument(
        "--out",
        default="bench-out",
        metavar="DIR",
        help="where bench.json, bench.md and bench.png go (default: bench-out)" + NUMBERED_HELP,
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write bench.json here")


def _one(values: tuple[int, ...] | None, option: str) -> int | None:
    if values is not None and len(values) != 1:
        raise UsageError(f"{option} takes one number, got {','.join(map(str, values))}")
    return values[0] if values else None


def preset_from_args(args) -> Preset:
    """The preset the options name, with each given option overriding its field."""
    preset = get_preset("quick" if args.quick else args.preset)
    for name in args.backends or ():
        if name not in BACKEND_NAMES:
            raise UsageError(f"unknown backend {name!r}: valid backends are {', '.join(BACKEND_NAMES)}")
    for mode in args.modes or ():
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}: valid modes are {', '.join(MODES)}")
    for jit in args.jit_compile or ():
        if jit not in JIT:
            raise UsageError(f"--jit-compile takes {', '.join(JIT)}, got {jit!r}")
    from backendlab.bench.shapes import SHAPES
    from backendlab.data import check_data
    from backendlab.models import MODELS
    from backendlab.pipelines import KINDS
    from backendlab.specs import check_spec

    known = list(dict.fromkeys([*SHAPES, *MODELS]))
    for model in args.models or ():
        if model not in known and ":" not in model:
            raise UsageError(f"unknown model {model!r}: use {', '.join(known)} or path/to/file.py:build")
        if model not in known:
            check_spec(model, "model")
    check_data(args.data)
    for kind in args.pipelines or ():
        if kind not in KINDS:
            raise UsageError(f"unknown pipeline {kind!r} in --pipelines: use {', '.join(KINDS)}")
    return preset.with_options(
        models=args.models,
        backends=args.backends,
        batch_sizes=args.batch_sizes,
        modes=args.modes,
        repeats=_one(args.repeats, "--repeats"),
        samples_per_repeat=_one(args.samples, "--samples"),
        steps_per_execution=args.steps_per_execution,
        jit_compile=args.jit_compile,
        threads=_one(args.threads, "--threads"),
        pipelines=args.pipelines,
        native=False if args.no_native else None,
        input_shape=args.input_shape,
        data=args.data,
        timeout_s=args.timeout,
    )


def run_with_bars(preset: Preset, out, *, json_path=None, console=None):
    """:func:`backendlab.bench.run.run_preset`, with one progress bar per backend on ``console`` (default: stderr)."""
    from rich.console import Console

    from backendlab.bench.run import run_preset
    from backendlab.cli_display import ProgressBars

    with ProgressBars(console or Console(stderr=True), width=11) as bars:
        return run_preset(preset, out, json_path=json_path, on_progress=bars)


def run_bench(args) -> int:
    from rich.console import Console

    from backendlab.bench.report import notes, rich_table
    from backendlab.cli import out
    from backendlab.cli_display import print_summary
    from backendlab.results import unused_folder

    preset = preset_from_args(args)
    folder = unused_folder(args.out)
    report = run_with_bars(preset, folder, json_path=args.json, console=Console(stderr=True))
    print_summary(out, rich_table(report), notes(report), report.failures)
    Console(stderr=True).print(f"wrote {folder}/bench.json, bench.md, bench.png", markup=False, highlight=False)
    return 1 if report.failures else 0
