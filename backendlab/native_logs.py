"""The frameworks' C++ start-up lines, kept off the user's terminal.

TensorFlow 2.21 prints these to stderr as its libraries load, whatever ``TF_CPP_MIN_LOG_LEVEL`` says
(seen on an x86 CPU with AVX-512, where oneDNN is on by default): each of its two libraries writes both
lines. They say nothing about the user's run, and they break the rule that bad input gets one line.
Python's ``sys.stderr`` cannot catch them (C++ writes to file descriptor 2), so while TensorFlow is first
imported, wherever that happens (Keras imports it for its TensorFlow backend), that descriptor goes to a
file, and what it caught is passed on without them.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator

#: A line holding one of these is start-up chatter.
STARTUP_CHATTER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "] oneDNN custom operations are on. ",
    # Where TF_CPP_MIN_LOG_LEVEL is unset (a user's own script): which CPU instructions TensorFlow was built for.
    "cpu_feature_guard.cc:",
    "To enable the following instructions: ",
)
#: The modules whose first import prints it.
CHATTY = ("tensorflow",)


#: What gloo (JAX's and PyTorch's collectives between CPUs) prints to stdout as processes join.
JOINING_CHATTER = ("[Gloo] Rank ",)


def startup_chatter_dropped() -> contextlib.AbstractContextManager[None]:
    """While the body runs, stderr's start-up chatter is dropped; every other line is passed on, in order,
    when it ends."""
    return lines_dropped(2, STARTUP_CHATTER)


def joining_chatter_dropped() -> contextlib.AbstractContextManager[None]:
    """Around processes joining each other (``--processes``, ``--devices`` on torch): gloo's lines on
    stdout are dropped, every other line passed on."""
    return lines_dropped(1, JOINING_CHATTER)


@contextlib.contextmanager
def lines_dropped(fd: int, chatter: tuple[str, ...]) -> Iterator[None]:
    """While the body runs, the lines written to file descriptor ``fd`` that hold one of ``chatter`` are
    dropped; every other line is passed on, in order, when it ends."""
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), fd)
        try:
            yield
        finally:
            stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught if not any(c.encode() in line for c in chatter)]
            if kept:
                os.write(fd, b"".join(kept))


class _QuietLoader(importlib.abc.Loader):
    """The module's own loader, running it with the chatter dropped."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with startup_chatter_dropped():
            self._loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietFirstImport(importlib.abc.MetaPathFinder):
    """Finds a chatty module as the other finders do and hands it a quiet loader, until it is imported."""

    def __init__(self):
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name not in CHATTY or self._finding or name in sys.modules:
            return None
        self._finding = True  # importlib.util.find_spec below asks the finders again, this one included
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_framework_imports() -> None:
    """From now on in this process and those it starts, the chatty frameworks' first import drops its
    start-up chatter, and TensorFlow logs errors only (unless ``TF_CPP_MIN_LOG_LEVEL`` says otherwise). For
    the command line, whose errors are one line; a no-op once they are imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    drop_startup_chatter()


def drop_startup_chatter() -> None:
    """From now on in this process, the chatty frameworks' first import drops its start-up chatter, and
    nothing else: what ``import backendlab`` does, in a user's own script too, whose logging stays theirs."""
    if not any(m in sys.modules for m in CHATTY) and not any(isinstance(f, _QuietFirstImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFirstImport())
