"""One training run's settings, from the command line through the job file to the worker.

A :class:`RunSpec` is filled by argparse (:func:`add_run_arguments`, :meth:`RunSpec.from_args`),
embedded by ``compare`` and ``bench``, carried in a job file as a plain dict
(:meth:`RunSpec.to_dict`, :meth:`RunSpec.from_dict`) and taken by
``backendlab.training.prepare``. Adding an option means one field here (its flag and help
live in the field's metadata) and the code that uses it.

This module imports no framework.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from backendlab.errors import UsageError

LOOPS = ("fit", "custom")
INITS = ("portable", "backend")
RANDOMS = ("portable", "backend")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def comma_list(text: str) -> tuple[str, ...]:
    """``a,b``: the items of a comma-separated list, at least one."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list, got {text!r}")
    return items


def int_list(text: str) -> tuple[int, ...]:
    """``1,2``: comma-separated positive integers, at least one."""
    try:
        values = tuple(int(item) for item in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    """``a,b``: the names in a comma-separated list, maybe none (the caller says what an empty one means)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def option(default: Any, help: str, *, type: Any = None, choices: tuple | None = None, flag: bool = True) -> Any:
    """A RunSpec field with its command-line flag; ``flag=False``: set by backendlab, not by a flag."""
    meta = {"help": help, "type": type, "choices": choices, "flag": flag}
    return field(default=default, metadata=meta)


@dataclass
class RunSpec:
    """The settings of one training run on one backend."""

    model: str = option(
        "mlp",
        "zoo name (mlp, cnn, rnn, transformer, functional, mobilenet, resnet, bert, gpt) "
        "or file.py:build / module:build (default: mlp)",
    )
    data: str | None = option(
        None,
        "breast_cancer, digits, sequences, pairs, images, tokens, next_tokens, a .npz file, "
        "or file.py:function returning arrays or pipelines (default: the model's own)",
    )
    epochs: int = option(10, "(default: 10)", type=positive_int)
    batch_size: int = option(32, "(default: 32)", type=positive_int)
    optimizer: str | None = option(
        None,
        "sgd (the seed's: momentum 0.9, Nesterov) or a keras.optimizers name "
        "(default: sgd; a compiled user model keeps its own)",
    )
    learning_rate: float | None = option(None, "(default: 0.01 for sgd, Keras's own otherwise)", type=positive_float)
    seed: int = option(0, "data split, initial weights and batch order (default: 0)", type=int)
    loop: str = option(
        "fit",
        "model.fit, or backendlab's custom loop with the backend's own autodiff (default: fit)",
        choices=LOOPS,
    )
    devices: int = option(
        1,
        "train data-parallel on N devices with the backend's own engine; "
        "the global batch is split across them (default: 1)",
        type=positive_int,
    )
    processes: int = option(
        1,
        "train data-parallel in N processes on this machine that behave like N hosts: a coordinator on "
        "localhost, one device each, and each reads only its share of every global batch (default: 1)",
        type=positive_int,
    )
    drop_remainder: bool = option(False, "leave out each epoch's last, partial batch, on one device or several")
    disable_stochastic: bool = option(
        False, "run Dropout, GaussianNoise, random augmentation, ... as in inference, for an exact comparison"
    )
    init: str = option(
        "portable",
        "starting weights: portable (drawn over NumPy from --seed: the same on every backend) or backend "
        "(Keras's initializers on the backend's own generator) (default: portable)",
        choices=INITS,
    )
    random: str = option(
        "portable",
        "random draws in training (Dropout, GaussianNoise, keras.random.*): portable (one counter-based "
        "generator keyed by each layer's seed: the same numbers on every backend) or backend (each backend's "
        "own generator) (default: portable)",
        choices=RANDOMS,
    )
    # Epochs a resumed model had already trained; set from the saved optimizer, not by a flag.
    initial_epoch: int = option(0, "", flag=False)

    # --- serialization: a job file carries the spec as it is ---

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UsageError(f"unknown run settings {', '.join(sorted(unknown))}: valid are {', '.join(field_names())}")
        return cls(**d)

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)

    # --- the command line ---

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunSpec:
        return cls(**{f.name: getattr(args, f.name) for f in flag_fields() if hasattr(args, f.name)})

    def check(self) -> RunSpec:
        """One clear error for a value no flag would have let through (the Python API has no argparse)."""
        for name in ("epochs", "batch_size", "devices", "processes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")
        if self.init not in INITS:
            raise UsageError(f"init must be 'portable' or 'backend', got {self.init!r}")
        if self.random not in RANDOMS:
            raise UsageError(f"random must be 'portable' or 'backend', got {self.random!r}")
        if self.loop not in LOOPS:
            raise UsageError(f"loop must be 'fit' or 'custom', got {self.loop!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise UsageError(f"learning rate must be positive, got {self.learning_rate!r}")
        if self.processes > 1 and self.devices > 1:
            raise UsageError(
                f"--processes {self.processes} gives each process one device: leave out --devices {self.devices}"
            )
        what = f"{self.processes} processes" if self.processes > 1 else f"{self.devices} devices"
        if self.batch_size % self.replicas:
            raise UsageError(
                f"batch size {self.batch_size} does not split evenly across {what}: "
                f"use a global batch size that is a multiple of {self.replicas}"
            )
        return self

    @property
    def replicas(self) -> int:
        """How many parts each global batch is split into: one per device of every process."""
        return self.devices * self.processes


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(RunSpec)]


def flag_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(RunSpec) if f.metadata.get("flag")]


def given_fields(argv: list[str]) -> set[str]:
    """The RunSpec fields whose flags appear in ``argv`` (the parser takes no abbreviations)."""
    flags = {"--" + f.name.replace("_", "-"): f.name for f in flag_fields()}
    return {flags[arg.split("=", 1)[0]] for arg in argv if arg.split("=", 1)[0] in flags}


def add_run_arguments(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """One flag per RunSpec field (``batch_size`` -> ``--batch-size``); ``defaults`` override the spec's."""
    for f in flag_fields():
        default = defaults.get(f.name, f.default)
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if f.name in defaults and help_text.startswith("(default:"):
            help_text = f"(default: {default})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", default=default, help=help_text)
        else:
            parser.add_argument(
                flag, type=f.metadata["type"], choices=f.metadata["choices"], default=default, help=help_text
            )
