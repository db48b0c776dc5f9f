"""Portable randomness: the same random numbers on every backend, eagerly and compiled.

Keras's layers draw through the active backend's random module at call time
(``keras.src.backend.random.dropout``, ``.normal``, ...), each backend with its own generator, so a
model with Dropout trains differently on each. :func:`portable` puts one generator in their place
for as long as it is entered: Threefry-2x32 (20 rounds, Random123's), a counter-based generator
written in ``keras.ops`` on int32 (wrapping add, xor, shifts masked to be logical), which gives the
same bits on JAX, TensorFlow and PyTorch, eagerly and under XLA, ``tf.function`` and ``torch.compile``.

- The key is the seed as Keras draws it (:func:`keras.src.random.seed_generator.draw_seed`): a
  ``SeedGenerator`` hands out its state and advances it, the same way on every backend; an int seed
  is fixed.
- The counter of an element is its place in the draw: (its row, its place in the row), one
  Threefry output giving two neighbours their 32 bits each. Rows are counted from ``offset`` (this
  replica's first row in the global batch), so under data parallelism a sample's mask does not
  depend on how the batch is split.
- Bits become floats the same way everywhere: the top 23 bits over 2**23, exact in float32. A
  normal draw is Box-Muller, a truncated one the inverse CDF: these use log, cos and erfinv, which
  agree across backends to float32 rounding (a few ulps), not bit for bit.

Only framework processes import this module (it imports Keras at the last moment).
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable

#: The functions of Keras's backend random module that :func:`portable` replaces.
NAMES = ("dropout", "uniform", "normal", "truncated_normal", "randint", "shuffle", "categorical")
MODES = ("portable", "backend")

# Random123's Threefry-2x32 rotation constants and key-schedule parity.
_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
_PARITY = 0x1BD11BDA
_ROUNDS = 20
_MANTISSA = 23  # float32 holds 23 bits after the point: u = bits / 2**23 is exact

#: This replica's first row in the global batch: an int, or a function of the draw's rows (its local batch).
_offset: int | Callable = 0
_saved: dict | None = None


# --- Threefry-2x32 on int32 ---


def _ops():
    import keras

    return keras.ops


def _rotl(x, r: int, ops, into):
    low = into.bitwise_and(ops.right_shift(x, 32 - r), (1 << r) - 1)  # arithmetic shift, masked: logical
    return into.bitwise_or(into.left_shift(x, r), low)


def threefry2x32(key, counter, ops=None, into=None):
    """Threefry-2x32 with 20 rounds: ``key`` two int32 scalars, ``counter`` two int32 tensors of one shape.

    Returns two int32 tensors: the 64 random bits of each counter, as two words (two's complement).
    ``ops``: the integer ops it runs on, ``keras.ops`` unless a backend passes its own (see :func:`_kernel`);
    ``into``: the same ops where they may write into their first argument, always a tensor made here
    (torch's in-place methods: no new tensor per op), ``ops`` themselves by default.
    """
    ops = ops or _ops()
    into = into or ops
    k0, k1 = key
    ks = (k0, k1, ops.bitwise_xor(ops.bitwise_xor(k0, k1), _PARITY))
    x0, x1 = ops.add(counter[0], k0), ops.add(counter[1], k1)
    for r in range(_ROUNDS):
        x0 = into.add(x0, x1)
        x1 = into.bitwise_xor(_rotl(x1, _ROTATIONS[r % 8], ops, into), x0)
        if r % 4 == 3:
            i = (r + 1) // 4
            x0 = into.add(x0, ks[i % 3])
            x1 = into.add(into.add(x1, ks[(i + 1) % 3]), i)
    return x0, x1


_kernels: dict = {}


def _kernel():
    """Threefry-2x32 as the active backend runs it fastest, the same bits: ``(k0, k1, c0, c1) -> (x0, x1)``.

    Its 20 rounds are some 140 element-wise integer ops; run one by one, each a kernel launch, they cost
    more than a small model's step. The backend fuses them (``random_kernel`` in ``backendlab/_impl``).
    """
    import keras

    name = keras.backend.backend()
    if name not in _kernels:
        from backendlab.backends import impl

        _kernels[name] = impl().random_kernel(threefry2x32)
    return _kernels[name]


# --- seeds, counters, bits ---


def _key(seed):
    """The seed as two int32 words: a SeedGenerator's state (advanced), an int, or a seed tensor as drawn."""
    from keras.src.random.seed_generator import SeedGenerator, draw_seed

    ops = _ops()
    if isinstance(seed, SeedGenerator):
        seed = _next(seed)
    elif seed is None or isinstance(seed, int):
        seed = draw_seed(seed)
    seed = ops.cast(ops.convert_to_tensor(seed), "int32")
    return seed[0], seed[1]


def _next(generator):
    """``generator.next()``'s seed and step (its state, then the state's counter plus one) in ops alone:
    Keras's own builds its increment with NumPy, which ``torch.compile`` cannot put in a graph."""
    ops = _ops()
    state = generator.state.value
    seed = ops.multiply(state, 1)  # a copy: on PyTorch the assignment below writes into the state in place
    generator.state.assign(ops.stack([state[0], ops.add(state[1], 1)]))
    return seed


def _shape(shape) -> tuple:
    return tuple(shape) if isinstance(shape, (tuple, list)) else tuple(_ops().shape(shape))


def _first_row(rows):
    """This replica's first row in the global batch, for a draw of ``rows`` rows (its share)."""
    return _offset(rows) if callable(_offset) else _offset


def _grid(shape, by_row: bool, width_of):
    """Counters for a draw of ``shape`` seen as rows: (its row in the global batch, a place in the row).

    ``width_of(size)`` says how many places a row of ``size`` elements needs. Returns the two counter
    words, each of shape ``(rows, width)``, and ``(rows, size)``.
    """
    ops = _ops()
    shape = _shape(shape)
    rows, size = (shape[0], 1) if shape else (1, 1)
    for d in shape[1:]:
        size = size * d
    first = _first_row(rows) if by_row and shape else 0
    row = ops.add(ops.arange(rows, dtype="int32"), ops.cast(first, "int32"))
    width = width_of(size)
    c0 = ops.broadcast_to(ops.expand_dims(row, 1), (rows, width))
    c1 = ops.broadcast_to(ops.expand_dims(ops.arange(width, dtype="int32"), 0), (rows, width))
    return c0, c1, rows, size


def random_bits(shape, seed, by_row: bool = True):
    """One int32 word of random bits per element of ``shape``: each Threefry output gives two neighbours theirs."""
    ops = _ops()
    c0, c1, rows, size = _grid(shape, by_row, lambda size: (size + 1) // 2)
    x0, x1 = _kernel()(*_key(seed), c0, c1)
    words = ops.reshape(ops.stack([x0, x1], axis=-1), (rows, -1))[:, :size]
    return ops.reshape(words, _shape(shape))


def random_pairs(shape, seed, by_row: bool = True):
    """Two int32 words of random bits per element of ``shape`` (what Box-Muller takes)."""
    ops = _ops()
    c0, c1, _, _ = _grid(shape, by_row, lambda size: size)
    x0, x1 = _kernel()(*_key(seed), c0, c1)
    return ops.reshape(x0, _shape(shape)), ops.reshape(x1, _shape(shape))


def _top(word):
    """The top 23 bits of ``word``, as an int32 in [0, 2**23)."""
    ops = _ops()
    return ops.bitwise_and(ops.right_shift(word, 32 - _MANTISSA), (1 << _MANTISSA) - 1)


def _unit(word, half: bool = False):
    """The top 23 bits of ``word`` as a float32 in [0, 1) (``half``: offset by half a step, in (0, 1))."""
    ops = _ops()
    top = ops.cast(_top(word), "float32")
    if half:
        top = ops.add(top, 0.5)
    return ops.multiply(top, 2.0**-_MANTISSA)


def _below(probability: float) -> int:
    """The int ``t`` with ``_top(word) < t`` exactly where ``_unit(word) < probability`` in float32."""
    as_float32 = struct.unpack("f", struct.pack("f", probability))[0]
    return math.ceil(as_float32 * 2**_MANTISSA)


def _float_dtype(dtype):
    from keras.src.backend.config import floatx

    return dtype or floatx()


# --- the portable versions of Keras's backend random functions (same signatures) ---


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    ops = _ops()
    u = _unit(random_bits(shape, seed))
    return ops.cast(ops.add(ops.multiply(u, maxval - minval), minval), _float_dtype(dtype))


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    ops = _ops()
    x0, x1 = random_pairs(shape, seed)
    u1 = ops.subtract(1.0, _unit(x0))  # (0, 1]: log is finite
    radius = ops.sqrt(ops.multiply(-2.0, ops.log(u1)))
    z = ops.multiply(radius, ops.cos(ops.multiply(2.0 * math.pi, _unit(x1))))
    return ops.cast(ops.add(ops.multiply(z, stddev), mean), _float_dtype(dtype))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Within two standard deviations, as Keras's own: the normal's inverse CDF over that band."""
    ops = _ops()
    u = _unit(random_bits(shape, seed), half=True)
    band = math.erf(2.0 / math.sqrt(2.0))
    t = ops.multiply(ops.subtract(ops.multiply(u, 2.0), 1.0), band)
    z = ops.multiply(ops.erfinv(t), math.sqrt(2.0))
    return ops.cast(ops.add(ops.multiply(z, stddev), mean), _float_dtype(dtype))


def randint(shape, minval, maxval, dtype="int32", seed=None):
    ops = _ops()
    word = ops.bitwise_and(random_bits(shape, seed), 0x7FFFFFFF)
    return ops.cast(ops.add(ops.mod(word, maxval - minval), minval), dtype)


def dropout(inputs, rate, noise_shape=None, seed=None):
    ops = _ops()
    if rate == 1.0:
        return ops.zeros_like(inputs)
    if rate == 0.0:
        return inputs
    keep = 1.0 - rate
    shape = _shape(inputs)
    if noise_shape is not None:
        shape = tuple(shape[i] if d is None else d for i, d in enumerate(noise_shape))
    mask = ops.less(_top(random_bits(shape, seed)), _below(keep))  # as uniform(shape) < keep, in fewer ops
    mask = ops.broadcast_to(mask, _shape(inputs))
    return ops.where(mask, ops.divide(inputs, ops.cast(keep, inputs.dtype)), ops.zeros_like(inputs))


def shuffle(x, axis=0, seed=None):
    """One permutation of the slices along ``axis`` (as TensorFlow's; the same draw on every replica)."""
    ops = _ops()
    x = ops.convert_to_tensor(x)
    n = _shape(x)[axis]
    if isinstance(n, int):
        spare = max(1, (n - 1).bit_length())
    else:  # a length TensorFlow's graph leaves unknown (a batch of None): the same bit length, counted in ops
        powers = ops.convert_to_tensor([1 << k for k in range(31)], dtype="int32")
        spare = ops.maximum(ops.sum(ops.cast(ops.greater_equal(ops.subtract(n, 1), powers), "int32")), 1)
    # Random high bits, the index in the low ones: no two keys tie, so any sort gives one order.
    high = ops.left_shift(ops.right_shift(random_bits((n,), seed, by_row=False), spare), spare)
    keys = ops.bitwise_or(high, ops.arange(n, dtype="int32"))
    return ops.take(x, ops.argsort(keys), axis=axis)


def categorical(logits, num_samples, dtype="int32", seed=None):
    """Gumbel-max: the largest of ``logits`` plus Gumbel noise, one draw per sample."""
    ops = _ops()
    logits = ops.convert_to_tensor(logits)
    rows, classes = _shape(logits)
    u = _unit(random_bits((rows, num_samples, classes), seed), half=True)
    gumbel = ops.negative(ops.log(ops.negative(ops.log(u))))
    scores = ops.add(ops.expand_dims(ops.cast(logits, "float32"), 1), gumbel)
    return ops.cast(ops.argmax(scores, axis=-1), dtype)


# --- installing them in Keras ---


def _backend_random():
    """The module Keras's layers and ``keras.random`` call at run time: the active backend's random module."""
    from keras.src import backend

    return backend.random


def install(offset: int | Callable | None = None) -> None:
    """Put the portable functions in place of the active backend's.

    ``offset``: this replica's first row in the global batch, an int or a function of a draw's rows
    (its local batch) that says it; None asks the backend's data-parallel engine
    (``replica_first_row`` in ``backendlab/_impl``: 0 on one device and under JAX's global program).
    """
    global _saved, _offset
    from backendlab.backends import impl

    module = _backend_random()
    if _saved is None:
        _saved = {name: getattr(module, name) for name in NAMES}
    _offset = impl().replica_first_row if offset is None else offset
    _kernel()  # built here, outside any graph a draw may later be traced in
    for name in NAMES:
        setattr(module, name, globals()[name])


def uninstall() -> None:
    """Give the backend its own functions back."""
    global _saved, _offset
    if _saved is not None:
        module = _backend_random()
        for name, fn in _saved.items():
            setattr(module, name, fn)
    _saved, _offset = None, 0


def installed() -> bool:
    return _saved is not None


@contextlib.contextmanager
def portable(offset: int | Callable | None = None):
    """Draw portably inside: every Keras random op on the active backend uses the Threefry stream."""
    was, previous = installed(), _offset
    install(offset)
    try:
        yield
    finally:
        if was:
            install(previous)
        else:
            uninstall()


def use(mode: str, offset: int | Callable | None = None):
    """The context for ``--random``: ``portable`` draws through :func:`portable`; ``backend`` keeps Keras's own."""
    if mode == "portable":
        return portable(offset)
    if mode == "backend":
        return contextlib.nullcontext()
    raise ValueError(f"random must be one of {', '.join(MODES)}, got {mode!r}")


# --- where the streams start ---


def portable_seed_states(model, seed: int) -> list[str]:
    """Start every unseeded ``SeedGenerator`` of ``model`` from ``(seed, its place in the model)``.

    Keras seeds a generator made without a seed from Python's ``random`` when it is made, which
    depends on what was built before in the process; a generator the user seeded
    (``Dropout(seed=42)``) starts from that seed on every backend already and is left alone.
    Returns the places of the generators set. The place is the layers' names as in
    :func:`backendlab.init.portable_init` (renumbered among siblings, not per process).
    """
    from backendlab.init import _seed_words, _sibling_names

    placed: list[str] = []

    def visit(layer, prefix: str, seen: set[int]) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        for i, generator in enumerate(getattr(layer, "_seed_generators", [])):
            if generator._initial_seed is None:
                place = f"{prefix}seed_generator_{i}"
                word = _seed_words(seed, place)[0] & 0x3FFFFFFF  # positive in every backend's seed dtype
                generator.state.assign(_ops().cast(_ops().convert_to_tensor([word, 0]), generator.state.dtype))
                placed.append(place)
        sublayers = getattr(layer, "_layers", [])
        for sublayer, name in zip(sublayers, _sibling_names([s.name for s in sublayers])):
            visit(sublayer, f"{prefix}{name}/", seen)

    visit(model, "", set())
    return placed
