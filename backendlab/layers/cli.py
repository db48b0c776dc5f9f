"""``backendlab check-layer FILE.py:factory --input-shape 4,16``: does a layer compute the same on every backend?

Seeded random inputs of that shape go through :func:`backendlab.testing.assert_backends_agree`;
one line per check is printed. Exit 0 when every backend agrees, 1 when one does not (the
differences on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys

from backendlab.layers.check import DEFAULT_ATOL, DEFAULT_RTOL  # no framework at import
from backendlab.runspec import name_list, positive_float

DTYPES = ("float32", "float64", "int32", "int64")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be sizes separated by commas, like 4,16; got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be 1 or more, like 4,16; got {text!r}")
    return shape


def add_check_layer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("factory", metavar="FILE.py:factory", help="a function that returns a keras Layer or Model")
    parser.add_argument(
        "--input-shape", type=_shape, required=True, metavar="N,...", help="the inputs' shape, batch first: 4,16"
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="the inputs' dtype (default: float32)")
    parser.add_argument(
        "--max-int",
        type=int,
        default=10,
        metavar="N",
        help="integer inputs (token ids) are drawn from 0..N-1 (default: 10)",
    )
    parser.add_argument(
        "--backends",
        type=name_list,
        default=None,
        metavar="A,B",
        help="the backends to compare, the reference first (default: every installed one)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the inputs, the weights and the cotangent")
    parser.add_argument(
        "--rtol", type=float, default=DEFAULT_RTOL, help=f"relative tolerance (default: {DEFAULT_RTOL:g})"
    )
    parser.add_argument(
        "--atol", type=positive_float, default=DEFAULT_ATOL, help=f"absolute tolerance (default: {DEFAULT_ATOL:g})"
    )
    parser.add_argument("--training", action="store_true", help="also compare the outputs in training mode")
    parser.add_argument("--no-gradients", action="store_true", help="skip the gradients")
    parser.add_argument(
        "--no-saving", action="store_true", help="skip saving on each backend and loading on the others"
    )


def random_inputs(shape: tuple[int, ...], dtype: str, seed: int, max_int: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    if dtype.startswith("int"):
        return rng.integers(0, max_int, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def checked_inputs(args):
    """The inputs the arguments ask for, once the values argparse lets through are checked."""
    from backendlab.errors import UsageError

    if args.max_int < 1:
        raise UsageError(f"--max-int must be 1 or more, got {args.max_int}")
    if not args.rtol >= 0:
        raise UsageError(f"--rtol must be a number >= 0, got {args.rtol}")
    return random_inputs(args.input_shape, args.dtype, args.seed, args.max_int)


def check_from_args(args, pool=None):
    """:func:`~backendlab.layers.check.assert_backends_agree` on what the check-layer arguments ask for."""
    from backendlab.layers.check import assert_backends_agree

    return assert_backends_agree(
        args.factory,
        checked_inputs(args),
        backends=args.backends,
        rtol=args.rtol,
        atol=args.atol,
        training=args.training,
        gradients=not args.no_gradients,
        saving=not args.no_saving,
        seed=args.seed,
        pool=pool,
    )


def run_check_layer(args) -> int:
    from backendlab.layers.check import BackendsDisagree

    try:
        report = check_from_args(args)
    except AssertionError as exc:  # the backends disagree, or one of them failed to run the layer
        if isinstance(exc, BackendsDisagree):
            print("\n".join(exc.report.lines()))
        print(f"backendlab: check-layer: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    print(report.summary())
    return 0
