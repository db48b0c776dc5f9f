"""Backend-independent starting weights: the same seed gives the same model on JAX, TensorFlow and PyTorch.

Keras's initializers draw from each backend's own generator, so ``keras.utils.set_random_seed(0)``
starts a model from different weights on each backend. :func:`portable_init` gives every variable
of a built model (``model.weights``: trainable and not, BatchNorm's moving statistics included) a
value drawn over NumPy from the distribution Keras's initializer for it would have drawn from,
with a generator seeded from ``(seed, the variable's place in the model)``:

    model = build(...); model(x)               # built: every variable exists
    start = portable_init(model, seed=0)       # before compile/fit; touches model.weights only
    start.checksum                             # the same on every backend
    start.note                                 # None, or one line naming what stayed the backend's own

**Which initializer made a variable.** A built Keras 3.15 variable does not remember it:
``Variable._initializer`` is kept only while the variable waits for deferred initialization (it is
cleared once the value exists), and a layer's ``kernel_initializer`` attributes say nothing about
the variables a custom ``build()`` makes with ``add_weight(initializer=...)``, nor about LSTM's
unit-forget bias. So each layer's build is *replayed*: a twin is made from the layer's config
(``from_config(get_config())``) and built with its recorded input shapes (``build_from_config``)
inside a ``keras.StatelessScope``, where Keras creates variables without values and keeps each one's
initializer. The twin's ``weights`` line up with the layer's (checked: names, shapes, dtypes).
User objects in the config (custom initializer classes or functions, lambdas) become an opaque
placeholder, so exactly their variables fall back. A layer that cannot be replayed (its config
does not round-trip) is searched sublayer by sublayer; what stays unexplained keeps the backend's
value and is listed, never guessed. The replay leaves no trace: Python's ``random`` state (Keras
seeds unseeded initializers from it), Keras's name counters and its list of pending variables are
restored.

**Covered**, by their configuration (the formulas of ``keras/src/initializers``): Zeros, Ones,
Constant, Identity (gain), STFT, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling
with every mode and distribution (so glorot/he/lecun uniform and normal: fans as
``compute_fans``, conv kernels by receptive field, ``input_axes``/``output_axes``; the truncated
normal's stddev divided by 0.87962566103423978, the stddev of a unit normal cut at two), Orthogonal
(gain; QR of a normal matrix with Keras's sign fix), Keras's own composite initializers (LSTM and
ConvLSTM ``unit_forget_bias``, BatchNorm renorm's moving stddev) and arrays a ``build()`` passes as
initializer. An array given to a layer's constructor (``Dense(kernel_initializer=array)``) falls
back, because Keras's config keeps only a function name for it; the variable keeps that array.
Same distribution, not the same bits as any backend: that is impossible, and not the point. An
initializer's own integer ``seed`` is replaced by ``(seed, place)``, so two variables that Keras
would fill identically from one seeded initializer get different values here.

**Kept: what was not drawn at random.** A factory that adapts a Normalization, or loads or sets
weights after building, leaves values that no initializer drew; drawing them again would start
from another model. Given ``rebuild`` (the factory), :func:`portable_init` builds the model once
more with Keras's seeds drawn otherwise (Python's ``random``, where Keras's unseeded initializers
take their seeds, and Keras's global seed generator): a variable that comes out the same was not
drawn at random and keeps its value, unless it holds exactly what its built-in initializer gives
(zeros, a constant, an initializer with a seed of its own), which is then drawn over NumPy as
before, so that the start stays the same on every backend. A factory that seeds Keras itself
(``keras.utils.set_random_seed`` inside it) builds the same values every time: they are all kept,
each backend's own, and only compare's shared start file makes them the same. A second build costs
what the first did (measured on JAX here: the zoo CNN 0.2 s instead of 0.03 s, mobilenet 2.1 s
instead of 1.0 s).

**The seed key** is the variable's place in the model, not ``variable.path``: Keras numbers
unnamed layers per process (the second MLP built in a process has ``dense_3``), so paths change
with what was built before. The key is the chain of layer names from the model down, each
without Keras's trailing number and renumbered among its siblings only (the second unnamed
``Dense`` of a parent is ``dense_1`` however many were built before), then the variable's name.
Adding a layer does not shift the others; inserting one before a sibling of the same name renumbers
that sibling.

**Exactness.** On one machine the values are bit-identical across backends (NumPy's PCG64 and
float64 arithmetic, then a cast). Across machines they can differ in the last float64 bit where
NumPy calls libm (the normal sampler's tail) or LAPACK (Orthogonal's QR), which the float32 cast
almost always absorbs.

**Options compared** (measured on this 2-core VM with all three backends installed, Keras 3.15.1,
while other jobs ran, so the best of several runs):

- NumPy from initializer configs (this module): the zoo CNN in 8 ms warm on PyTorch, 10 ms on JAX,
  15 ms on TensorFlow; the transformer in 19-31 ms; 4 Dense(1024) layers (4.2M parameters) in
  50-56 ms. The first call in a JAX or PyTorch process takes 2.7-3.1 s more, all of it Keras's
  config serialization importing TensorFlow (it checks for ``tf.TensorShape``; 11 ms when
  TensorFlow is already imported, and no cost where TensorFlow is not installed, as in a
  one-backend nox session). Covers every built-in initializer; custom ones fall back, named.
- Keras's numpy backend in a helper process: ``KERAS_BACKEND=numpy``, import Keras, build the CNN,
  write its weights: 3.9-5.4 s wall and 320 MB (importing Keras is 2.8-4.2 s of it, and pulls in
  JAX; the build is 0.15 s). Runs Keras's own code, so a custom initializer written with
  ``keras.random`` is covered too; but the model must be rebuildable in another process (a zoo
  name or ``file.py:build``, not an object in memory) and the weights travel through a file.
- A cache keyed by architecture and seed (a hash of the model's config and the seed, to an
  ``.npz``): a hit is one file read (1 ms for the CNN), but a miss still needs one of the two
  above, and the key must capture everything that shapes the weights. It saves time, no more.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import inspect
import math
import random
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The stddev of a unit normal truncated to [-2, 2]; Keras divides by it so a truncated draw keeps the stddev asked.
TRUNCATED_NORMAL_STDDEV = 0.87962566103423978

#: How many fallback paths the one-line note names before it says "and N more".
NOTE_NAMES = 8


@dataclass(frozen=True)
class PortableStart:
    """What :func:`portable_init` did: the starting weights' checksum and which variables it set."""

    checksum: str
    portable: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)
    # Not drawn at random when the model was built (adapt, set_weights, load_weights in its factory): kept as they are.
    kept: list[str] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        """One line naming the variables that kept their backend's own value, or None when there are none."""
        if not self.fallback:
            return None
        count = len(self.fallback)
        names = ", ".join(self.fallback[:NOTE_NAMES])
        if count > NOTE_NAMES:
            names += f" and {count - NOTE_NAMES} more"
        subject = "1 variable keeps its" if count == 1 else f"{count} variables keep their"
        return f"{subject} backend's own initializer (not reproducible portably): {names}"

    def variables(self) -> dict[str, list[str]]:
        """Each variable's path by what the start did with it: drawn portably, kept as built, or its backend's own."""
        return {"drawn": self.portable, "kept": self.kept, "fallback": self.fallback}


def weights_checksum(arrays: Iterable) -> str:
    """First 16 hex digits of the sha256 of every array's float32 bytes, in order (``model.weights`` order)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def portable_init(model, seed: int, rebuild: Callable[[], Any] | None = None) -> PortableStart:
    """Give every variable of the built ``model`` a backend-independent starting value drawn from ``seed``.

    Touches ``model.weights`` only (not optimizer or metric variables): call it after the model is
    built and before the first training step; before or after ``compile`` is the same. Variables
    whose initializer is not a Keras built-in keep their value and are listed in ``fallback``.

    It sets *starting* values: without ``rebuild``, call it before anything that sets weights from
    data (``adapt()`` of a Normalization layer, ``set_weights``, ``load_weights``). ``rebuild`` is the
    function that built ``model``, taking no arguments and returning it built: it is called once more
    with Keras's seeds drawn otherwise (:func:`_keras_state_kept`), and a variable it gives the same
    value was not drawn at random. Such a variable keeps its value (listed in ``kept``), unless it
    still holds exactly what its built-in initializer gives (zeros, a constant, an initializer with a
    seed of its own), which is drawn portably as before.
    """
    from backendlab.errors import UsageError

    if not model.built:
        raise UsageError(
            f"portable_init needs a built model: {model.name!r} has no weights yet; "
            "call it on a batch or model.build(input_shape) first"
        )
    weights = model.weights
    keys = _place_keys(model)
    initializers = _initializers(model)
    not_random = _equal_when_rebuilt(model, rebuild, seed) if rebuild is not None else set()
    portable, fallback, kept = [], [], []
    for variable in weights:
        initializer = initializers.get(id(variable))
        if id(variable) in not_random and not _holds_initial_value(variable, initializer):
            kept.append(variable.path)
            continue
        value = _portable_value(variable, initializer, seed, keys[id(variable)])
        if value is None:
            (kept if id(variable) in not_random else fallback).append(variable.path)
        else:
            variable.assign(value)
            portable.append(variable.path)
    return PortableStart(weights_checksum(np.asarray(v.numpy()) for v in weights), portable, fallback, kept)


def _equal_when_rebuilt(model, rebuild: Callable[[], Any], seed: int) -> set[int]:
    """id(variable) of every variable of ``model`` that a second build, under other Keras seeds, gives the same value.

    Keras's initializers are the only thing those seeds reach, so what is equal was set otherwise:
    by ``adapt``, ``set_weights`` or ``load_weights`` after building, or by a deterministic
    initializer. A rebuild whose variables do not line up with the model's tells nothing: every
    variable is then taken as drawn at random.
    """
    with _keras_state_kept():
        random.seed(_seed_words(seed, "rebuild")[0])
        twin = rebuild()
    if _signatures(twin.weights) != _signatures(model.weights):
        return set()
    return {
        id(mine)
        for mine, theirs in zip(model.weights, twin.weights)
        if np.array_equal(np.asarray(mine.numpy()), np.asarray(theirs.numpy()))
    }


def _holds_initial_value(variable, initializer) -> bool:
    """Whether ``variable`` holds what Keras's built-in ``initializer`` gives it (a deterministic one, or seeded)."""
    from keras import ops

    if initializer is None or _drawer(initializer) is None:
        return False
    try:
        value = initializer(tuple(variable.shape), dtype=variable.dtype)
    except Exception:  # e.g. a closure that needs more than a shape: nothing to say it was not set after building
        return False
    return np.array_equal(np.asarray(ops.convert_to_numpy(value)), np.asarray(variable.numpy()))


def _portable_value(variable, initializer, seed: int, key: str) -> np.ndarray | None:
    if initializer is None:
        return None
    rng = np.random.default_rng(_seed_words(seed, key))
    try:
        value = draw(initializer, tuple(variable.shape), rng)
    except NotPortable:
        return None
    return np.asarray(np.broadcast_to(value, variable.shape), dtype=_numpy_dtype(variable.dtype))


def _seed_words(seed: int, key: str) -> list[int]:
    """Eight 32-bit words of sha256(seed, key): a stable hash (Python's ``hash`` is salted per process)."""
    digest = hashlib.sha256(f"{int(seed)}\0{key}".encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]


def _numpy_dtype(dtype: str) -> np.dtype:
    try:
        return np.dtype(dtype)
    except TypeError:  # bfloat16 and friends: Keras casts on assign
        return np.dtype(np.float32)


# --- Drawing a value from an initializer, over NumPy --------------------------------------------------------------


class NotPortable(Exception):
    """The initializer is not one whose distribution this module knows."""


def draw(initializer, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A value of ``shape`` from ``initializer``'s distribution, as float64; raises NotPortable for unknown ones."""
    drawer = _drawer(initializer)
    if drawer is None:
        raise NotPortable(repr(initializer))
    return drawer(shape, rng)


def _drawer(initializer) -> Callable[[tuple[int, ...], np.random.Generator], np.ndarray] | None:
    """How to draw from ``initializer`` over NumPy; None for one whose distribution this module does not know."""
    kind = type(initializer)
    if kind.__module__.startswith("keras.src.initializers") and kind.__name__ in _BUILT_INS:
        return functools.partial(_BUILT_INS[kind.__name__], initializer)
    closure = _KERAS_CLOSURES.get((getattr(initializer, "__module__", None), getattr(initializer, "__qualname__", "")))
    if closure is not None:
        return functools.partial(closure, inspect.getclosurevars(initializer).nonlocals)
    return None


def compute_fans(shape: tuple[int, ...], input_axes=None, output_axes=None) -> tuple[int, int]:
    """Keras's ``compute_fans``: conv kernels count their receptive field in both fans."""
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def truncated_normal(rng: np.random.Generator, shape, mean: float, stddev: float) -> np.ndarray:
    """Normal values more than two stddev from the mean are drawn again, as Keras documents."""
    z = rng.standard_normal(shape)
    outside = np.abs(z) > 2.0
    while outside.any():
        z[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(z) > 2.0
    return mean + stddev * z


def _variance_scaling(init, shape, rng):
    fan_in, fan_out = compute_fans(shape, init.input_axes, init.output_axes)
    fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[init.mode]
    scale = init.scale / max(1.0, fans)
    if init.distribution == "truncated_normal":
        return truncated_normal(rng, shape, 0.0, math.sqrt(scale) / TRUNCATED_NORMAL_STDDEV)
    if init.distribution == "untruncated_normal":
        return rng.normal(0.0, math.sqrt(scale), shape)
    limit = math.sqrt(3.0 * scale)
    return rng.uniform(-limit, limit, shape)


def _orthogonal(init, shape, rng):
    rows, cols = math.prod(shape[:-1]), shape[-1]
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))  # makes Q unique, so it is uniform over orthogonal matrices
    if rows < cols:
        q = q.T
    return init.gain * q.reshape(shape)


def _identity(init, shape, rng):
    return init.gain * np.eye(*shape)


def _stft(init, shape, rng):
    """Keras's STFT kernel (cosine or sine waves, optionally windowed), computed in float64."""
    from scipy.signal import get_window

    frame_length, _, fft_length = shape
    freq = np.arange(fft_length).reshape(1, 1, fft_length) / ((fft_length - 1) * 2)
    time = np.arange(frame_length).reshape(frame_length, 1, 1)
    args = -2 * time * freq * np.pi
    kernel = np.cos(args) if init.side == "real" else np.sin(args)
    if init.window is None:
        return kernel
    window = get_window(init.window, frame_length, init.periodic) if isinstance(init.window, str) else init.window
    window = np.asarray(window, dtype=np.float64).reshape(frame_length, 1, 1)
    scaling = {"density": np.sqrt(np.sum(window**2)), "spectrum": np.sum(np.abs(window))}.get(init.scaling, 1.0)
    return kernel * window / scaling


#: Keras's built-in initializer classes by name (only from ``keras.src.initializers``: a subclass is a user's own).
_BUILT_INS: dict[str, Callable] = {
    "Zeros": lambda init, shape, rng: np.zeros(shape),
    "Ones": lambda init, shape, rng: np.ones(shape),
    "Constant": lambda init, shape, rng: np.full(shape, init.value, dtype=np.float64),
    "Identity": _identity,
    "STFT": _stft,
    "RandomNormal": lambda init, shape, rng: rng.normal(init.mean, init.stddev, shape),
    "RandomUniform": lambda init, shape, rng: rng.uniform(init.minval, init.maxval, shape),
    "TruncatedNormal": lambda init, shape, rng: truncated_normal(rng, shape, init.mean, init.stddev),
    "Orthogonal": _orthogonal,
    **dict.fromkeys(
        ["VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal"],
        _variance_scaling,
    ),
}


def _unit_forget_bias(scope, shape, rng):
    """LSTM's bias with ``unit_forget_bias``: [bias_initializer, ones, bias_initializer x 2] over its four gates."""
    n, cell = shape[0] // 4, scope["self"]
    return np.concatenate(
        [draw(cell.bias_initializer, (n,), rng), np.ones(n), draw(cell.bias_initializer, (2 * n,), rng)]
    )


def _renorm_stddev(scope, shape, rng):
    """BatchNormalization(renorm=True) starts its moving stddev at the square root of the variance initializer."""
    return np.sqrt(draw(scope["self"].moving_variance_initializer, shape, rng))


def _array_value(scope, shape, rng):
    """``add_weight(initializer=array)`` in a build(): the array itself, the same on every backend."""
    from keras import ops

    return np.asarray(ops.convert_to_numpy(scope["identifier"]), dtype=np.float64)


#: Initializer functions Keras defines inside its own code, by (module, qualified name).
_KERAS_CLOSURES: dict[tuple[str, str], Callable] = {
    ("keras.src.layers.rnn.lstm", "LSTMCell.build.<locals>.bias_initializer"): _unit_forget_bias,
    ("keras.src.layers.rnn.conv_lstm", "ConvLSTMCell.build.<locals>.bias_initializer"): _unit_forget_bias,
    (
        "keras.src.layers.normalization.batch_normalization",
        "BatchNormalization.build.<locals>.moving_stddev_initializer",
    ): _renorm_stddev,
    ("keras.src.initializers", "get.<locals>.initialize_fn"): _array_value,
}


# --- Which initializer made each variable: replaying builds -------------------------------------------------------


class OpaqueInitializer:
    """Stands in for a user's object in a replayed layer's config; a variable it initializes falls back."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, shape, dtype=None):
        from keras import ops

        return ops.zeros(shape, dtype=dtype)


def _initializers(model) -> dict[int, object]:
    """id(variable) -> the initializer that made it, for every variable of ``model`` that can be explained."""
    found: dict[int, object] = {}
    _explain(model, found, visited=set())
    return found


def _explain(layer, found: dict[int, object], visited: set[int]) -> None:
    """Replay ``layer`` whole if it can be; otherwise each of its sublayers (its own variables stay unexplained)."""
    if id(layer) in visited:  # a shared layer
        return
    visited.add(id(layer))
    if not _is_graph(layer):
        replayed = _replay(layer)
        if replayed is not None:
            for variable, initializer in zip(layer.weights, replayed):
                found.setdefault(id(variable), initializer)
            return
    for sublayer in layer._layers:
        _explain(sublayer, found, visited)


def _is_graph(layer) -> bool:
    """Functional and Sequential models only wire their layers: explain those one by one."""
    import keras
    from keras.src.models.functional import Functional

    return isinstance(layer, (Functional, keras.Sequential))


def _replay(layer) -> list | None:
    """The initializers ``layer``'s construction and build() use, in ``layer.weights`` order; None if not replayable."""
    with _no_trace(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Keras warns when it serializes a lambda
        try:
            build_config = layer.get_build_config()
            twin = type(layer).from_config(_opaque_user_objects(layer.get_config()))
            if build_config:
                twin.build_from_config(build_config)
        except Exception:  # e.g. a custom layer whose __init__ takes objects Keras cannot serialize
            return None
    if _signatures(twin.weights) != _signatures(layer.weights):
        return None
    return [v._initializer for v in twin.weights]


def _signatures(variables) -> list[tuple]:
    """Each variable's name, shape and dtype; the names without Keras's per-process number (an unnamed
    ``add_weight`` is ``variable`` in the layer and ``variable_1`` in its twin)."""
    names = _sibling_names([v.name for v in variables])
    return [(name, tuple(v.shape), str(v.dtype)) for name, v in zip(names, variables)]


def _opaque_user_objects(config):
    """``config`` with every serialized object that is not Keras's own replaced by an OpaqueInitializer."""
    if isinstance(config, dict):
        if "class_name" in config and "config" in config and not str(config.get("module") or "").startswith("keras"):
            return OpaqueInitializer()
        return {k: _opaque_user_objects(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return type(config)(_opaque_user_objects(v) for v in config)
    return config


@contextlib.contextmanager
def _no_trace():
    """A StatelessScope for the twin's variables (no values, initializers kept), then Keras's global state as before."""
    import keras

    with _keras_state_kept(), keras.StatelessScope(initialize_variables=False):
        yield


@contextlib.contextmanager
def _keras_state_kept():
    """Whatever runs inside, Keras's global state afterwards as it was before.

    Restored: Python's ``random`` state (Keras seeds unseeded initializers from it, and makes its
    global seed generator from it), that global seed generator (unseeded ``keras.random`` calls
    advance it; inside, it is made afresh), NumPy's global generator, the counters that number
    unnamed layers, and the list of variables awaiting initialization (a replayed twin's must
    never be initialized).
    """
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    random_state, numpy_state = random.getstate(), np.random.get_state()
    generator = global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)
    name_counters = copy.copy(global_state.get_global_attribute("object_name_uids"))
    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    try:
        yield
    finally:
        random.setstate(random_state)
        np.random.set_state(numpy_state)
        global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, generator)
        global_state.set_global_attribute("object_name_uids", name_counters)
        global_state.set_global_attribute("uninitialized_variables", pending)


# --- The seed key: a variable's place in the model ----------------------------------------------------------------


def _place_keys(model) -> dict[int, str]:
    """id(variable) -> its place in the model (``conv2d_1/kernel``), independent of what was built before."""
    keys: dict[int, str] = {}
    _key_layer(model, "", keys, visited=set())
    return keys


def _key_layer(layer, prefix: str, keys: dict[int, str], visited: set[int]) -> None:
    if id(layer) in visited:
        return
    visited.add(id(layer))
    own = layer._trainable_variables + layer._non_trainable_variables
    for variable, name in zip(own, _sibling_names([v.name for v in own])):
        keys.setdefault(id(variable), prefix + name)
    for sublayer, name in zip(layer._layers, _sibling_names([s.name for s in layer._layers])):
        _key_layer(sublayer, f"{prefix}{name}/", keys, visited)


def _sibling_names(names: list[str]) -> list[str]:
    """Names without Keras's per-process number (``dense_7``, ``forward_lstm_2``), renumbered among siblings only."""
    seen: dict[str, int] = {}
    stable = []
    for name in names:
        name = re.sub(r"_\d+$", "", name)
        count = seen.get(name, 0)
        seen[name] = count + 1
        stable.append(name if count == 0 else f"{name}_{count}")
    return stable
