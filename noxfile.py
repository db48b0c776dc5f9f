"""The test matrix, by layer: the unit tests once with no framework installed, the per-backend tests once
per backend (each in its own virtualenv with only that backend), then the cross-backend tests once.

    nox -l                              list the sessions
    nox                                 lint, then every test session
    nox -s lint                         ruff check and ruff format --check
    nox -s tests                        unit, each backend, then cross (tests/unit, tests/backend, tests/cross)
    nox -s "tests(suite='torch')"       one of them
    nox -s bench                        the quick benchmark preset

All installs use constraints.txt, the tested versions (torch==2.13.0 is the CPU wheel).
"""

import os
import sys
import time
from pathlib import Path

import nox

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from backendlab.backends import BACKENDS  # noqa: E402  (imports no framework)

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

UNIT, CROSS = "unit", "cross"
#: pytest-xdist processes for the layers that start workers: their tests spend much of their time
#: waiting on a subprocess's imports, which a second process overlaps (each has its own warm pool).
PARALLEL = str(min(os.cpu_count() or 1, 4))
#: Pauses, in seconds, before installing again after a failed install. pip resumes a broken download
#: itself, but gives up within a minute; a registry that drops connections for longer failed a CI run.
INSTALL_PAUSES = (30, 120)
#: Each test session: the folder of tests/ it runs, and the extras it installs.
SUITES = {
    UNIT: ("unit", "test"),
    **{name: ("backend", f"{b.extra},export-{b.extra},hub,test") for name, b in BACKENDS.items()},
    CROSS: ("cross", "all,export,hub,test"),
}


def install(session: nox.Session, *args: str) -> None:
    """``pip install -c constraints.txt *args``, tried again after each of `INSTALL_PAUSES` if it fails."""
    for pause in (*INSTALL_PAUSES, None):
        try:
            session.install("-c", "constraints.txt", "--retries", "10", "--timeout", "60", *args)
            return
        except nox.command.CommandFailed:
            if pause is None:
                raise
            session.warn(f"pip install failed; installing again in {pause} s (a dropped download resumes)")
            time.sleep(pause)


@nox.session
@nox.parametrize("suite", list(SUITES))
def tests(session: nox.Session, suite: str) -> None:
    """pytest on one layer of tests/: `unit` (no framework installed), one backend's, or `cross` (every backend).

    keras-hub goes in without its dependencies (the zoo's bert and gpt): its metadata asks for
    tensorflow-text, which would install the full tensorflow beside tensorflow-cpu; what it imports at
    run time is Keras and the ``hub`` extra (see constraints.txt).
    """
    folder, extras = SUITES[suite]
    install(session, "-e", f".[{extras}]")
    if suite != UNIT:
        install(session, "--no-deps", "keras-hub")
    env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if suite in BACKENDS:
        env["KERAS_BACKEND"] = suite
    parallel = [] if suite == UNIT else ["-n", PARALLEL, "--dist", "loadfile"]
    session.run(
        "pytest", f"tests/{folder}", *parallel, "-p", "no:cacheprovider", "--durations=10", *session.posargs, env=env
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check, configured in pyproject.toml."""
    install(session, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """The quick benchmark preset on every backend (under 3 minutes on 2 cores)."""
    install(session, "-e", f".[{SUITES[CROSS][1]}]")
    install(session, "--no-deps", "keras-hub")
    session.run(
        "python", "benchmarks/quick.py", "--out", "bench-out", *session.posargs, env={"TF_CPP_MIN_LOG_LEVEL": "2"}
    )
