"""The commands as Python functions: ``backendlab.compare(model="cnn", epochs=1)`` runs what
``backendlab compare --model cnn --epochs 1`` runs, and returns its result instead of printing it.

Keyword arguments are the command's flags, named as argparse names them (``--batch-size`` is
``batch_size=``; a switch ``--no-native`` is ``native=False``), and go through the command's own
parser: the same defaults, and a bad value raises :class:`~backendlab.errors.UsageError` with the
line the command line prints after ``backendlab: error:``. A list may be given as a list. A value
no flag can spell (a Python callable as ``model=``) is handed on as it is.

``compare``, ``bench`` and ``tune`` run in workers and import no framework here; ``train`` and
``export`` run here, on the backend ``KERAS_BACKEND`` names, as their commands do. Progress goes
to stderr in a terminal and into the cell in Jupyter (rich draws it there).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backendlab.errors import UsageError

#: What stands in the command line for a value handed on as it is (a callable), for a positional argument.
_HANDED_ON = "<python object>"


class _Raising(argparse.ArgumentParser):
    def error(self, message):  # the line the command prints after "backendlab: error:"
        raise UsageError(message)


def _spelled(value: Any) -> str | None:
    """``value`` as a flag's text, or None where no flag can spell it (it is handed on as it is)."""
    if isinstance(value, str | int | float):  # a bool too: True is "True", which a number flag refuses
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ",".join(map(str, value))
    return None


def arguments(command: str, options: Mapping[str, Any]) -> argparse.Namespace:
    """The namespace the command's parser makes of ``options``, each keyword given as its flag."""
    from backendlab.cli import SUBCOMMANDS

    name = command.replace("-", "_")
    parser = _Raising(prog=f"backendlab {command}", allow_abbrev=False, add_help=False)
    getattr(importlib.import_module(SUBCOMMANDS[command][0]), f"add_{name}_arguments")(parser)
    actions = {a.dest: a for a in parser._actions}
    argv: list[str] = []
    positional: list[str] = []
    handed_on: dict[str, Any] = {}
    for key, value in options.items():
        action, inverted = actions.get(key), False
        if action is None and f"no_{key}" in actions:  # native=False for --no-native
            action, inverted = actions[f"no_{key}"], True
        if action is None:
            valid = sorted(k[3:] if k.startswith("no_") else k for k in actions)
            raise UsageError(f"{name}() got an unknown argument {key!r}: valid are {', '.join(valid)}")
        flag = action.option_strings[0] if action.option_strings else None
        if value is None:  # the default
            continue
        if action.nargs == 0:  # a switch: --no-portability is portability=False
            if not isinstance(value, bool):
                raise UsageError(f"argument {key}: must be True or False, got {value!r}")
            if (value != action.const) if inverted else (value == action.const):
                argv.append(flag)
            continue
        text = _spelled(value)
        if text is None:
            handed_on[action.dest] = value
            text = _HANDED_ON if flag is None else None
        if text is not None:
            (positional.append(text) if flag is None else argv.append(f"{flag}={text}"))
    args = parser.parse_args([*argv, "--", *positional] if positional else argv)
    args.argv = argv  # train --resume tells the flags given from those not given
    for dest, value in handed_on.items():
        setattr(args, dest, value)
    return args


def _sent_folder(save) -> Path:
    """Where what this process runs itself (train, export) reads a Python object from: beside ``save``, or a
    temporary folder removed when Python exits."""
    if save is not None:
        return Path(save).with_name(f"{Path(save).stem}_sent")
    folder = Path(tempfile.mkdtemp(prefix="backendlab-sent-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _send_models(args) -> None:
    """bench's and tune's models and data given as Python objects, sent to ``--out``'s ``sent`` folder."""
    from backendlab.callables import SENT_FOLDER, send

    folder = Path(args.out) / SENT_FOLDER
    if args.models is not None:
        args.models = tuple(send(m, "model factory", folder, f"model{i}") for i, m in enumerate(args.models))
    if args.data is not None:
        args.data = send(args.data, "data function", folder, "data")


def _console(progress: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=not progress)


def compare(*, pool=None, env: Mapping[str, str] | None = None, progress: bool = True, **options):
    """Train one model on every backend from the same start and batches, and compare: ``backendlab compare``.

    ``options``: the flags of ``backendlab compare`` (``model``, ``data``, ``epochs``, ``backends``, ``rtol``,
    ``out``, ...). ``pool``: warm workers to run on and keep warm (:func:`backendlab.workers.shared_pool`);
    ``env``: environment variables its jobs see. Returns the :class:`~backendlab.compare.CompareReport`
    (``report.verdict``; ``report.exit_code`` is the command's), also written to ``out``.
    """
    from backendlab.compare.cli import compare_with_bars, options_from_args
    from backendlab.results import check_writable, write_json

    args = arguments("compare", options)
    if args.json is not None:
        check_writable(args.json, "--json")
    report, _ = compare_with_bars(options_from_args(args), _console(progress), pool=pool, env=dict(env or {}))
    if args.json:
        write_json(args.json, report)
    return report


def train(*, progress: bool = True, **options):
    """Train on the backend ``KERAS_BACKEND`` names, in this process: ``backendlab train``.

    ``options``: its flags (``model``, ``data``, ``epochs``, ``save``, ``resume``, ``json``, ...).
    Returns the :class:`~backendlab.results.TrainResult`. Training on several processes (``processes``,
    or ``devices`` on PyTorch, which starts them with torchrun) is the command line's.
    """
    from backendlab.backends import ensure_backend
    from backendlab.callables import send
    from backendlab.cli import train_here, train_spec

    args = arguments("train", options)
    # A model or data given as a Python object is read from a file, as the workers read theirs: beside the saved
    # model, whose run names it (a resume loads the user's classes from it); else in a folder of this session's.
    folder = _sent_folder(args.save)
    args.model = send(args.model, "model factory", folder, "model")
    args.data = None if args.data is None else send(args.data, "data function", folder, "data")
    spec = train_spec(args)
    if spec.processes > 1 or (spec.devices > 1 and ensure_backend().launcher):
        raise UsageError(
            f"train() runs in this process; training in several processes is the command line's: "
            f"backendlab train --processes {spec.processes} --devices {spec.devices} ..."
        )
    return train_here(spec, resume=args.resume, save=args.save, json_path=args.json, shown=_console(progress))


def bench(*, progress: bool = True, **options):
    """Throughput of each backend against native loops and the matmul peak: ``backendlab bench``.

    ``options``: its flags (``preset``, ``quick``, ``models``, ``backends``, ``batch_sizes``, ``out``, ...).
    Returns the :class:`~backendlab.bench.results.BenchReport`, also written to ``out``.
    """
    from backendlab.bench.cli import preset_from_args, run_with_bars

    args = arguments("bench", options)
    _send_models(args)
    return run_with_bars(preset_from_args(args), args.out, json_path=args.json, console=_console(progress))


def tune(*, progress: bool = True, **options):
    """The fastest settings per backend for a model, each proven to train the same: ``backendlab tune``.

    ``options``: its flags (``models``, ``batch_sizes``, ``jit_compile``, ``budget_s``, ``out``, ...).
    Returns the :class:`~backendlab.tune.results.TuneReport`, also written to ``out``.
    """
    from backendlab.results import check_writable
    from backendlab.tune.cli import options_from_args, tune_with_bars

    args = arguments("tune", options)
    _send_models(args)
    opts = options_from_args(args)
    check_writable(args.out, "--out", folder=True)
    return tune_with_bars(opts, args.out, json_path=args.json, console=_console(progress))


def export(model, *, progress: bool = True, **options):
    """Export a saved ``.keras`` model (``format="onnx"`` or ``"tf_saved_model"``), on the backend
    ``KERAS_BACKEND`` names, in this process: ``backendlab export``.

    ``options``: its flags (``format``, ``out``, ``check``: the data to run the export on, ``atol``,
    ``rtol``). Returns the :class:`~backendlab.export.results.ExportResult`; ``result.status`` is
    ``"agree"`` or ``"diverge"`` where it was checked. An export that cannot be written raises
    :class:`~backendlab.export.run.ExportFailed`.
    """
    from backendlab.callables import send
    from backendlab.export.cli import export_file

    args = arguments("export", {"model": model, **options})
    if args.check is not None:
        args.check = send(args.check, "data function", _sent_folder(None), "data")
    return export_file(args, _console(progress))


def check_layer(factory, *, pool=None, **options):
    """Does the layer ``factory()`` makes compute the same on every backend? ``backendlab check-layer``.

    ``options``: its flags (``input_shape`` (required), ``dtype``, ``backends``, ``rtol``, ``atol``,
    ``training``, ``gradients``, ``saving``, ``seed``). Returns the
    :class:`~backendlab.testing.ParityReport`, its ``failures`` the checks that disagree; to fail a
    test instead, :func:`backendlab.testing.assert_backends_agree`.
    """
    from backendlab.layers.check import BackendsDisagree
    from backendlab.layers.cli import check_from_args

    args = arguments("check-layer", {"factory": factory, **options})
    try:
        return check_from_args(args, pool=pool)
    except BackendsDisagree as exc:  # the checks ran: the report says which disagree
        return exc.report
