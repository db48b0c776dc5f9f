"""The test matrix: one session per backend, each in its own virtualenv with only that backend
installed, plus ``all`` with every backend for the cross-backend tests.

    nox -l                              list the sessions
    nox                                 lint, then every test session
    nox -s lint                         ruff check and ruff format --check
    nox -s tests                        every backend, then the cross-backend session
    nox -s "tests(backend='jax')"       one of them
    nox -s bench                        the quick benchmark preset

All installs use constraints.txt, the tested versions (torch==2.13.0 is the CPU wheel).
"""

import sys
from pathlib import Path

import nox

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from backendlab.backends import BACKEND_NAMES, BACKENDS  # noqa: E402  (imports no framework)

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

CROSS = "all"  # the session with every backend, for tests marked `cross`


def _install(session: nox.Session, backend: str) -> None:
    """The backend (or every backend), what exporting from it needs, keras_hub for the zoo's bert and gpt, and pytest.

    keras-hub goes in without its dependencies: its metadata asks for tensorflow-text, which would
    install the full tensorflow beside tensorflow-cpu (and into the jax and torch sessions); what it
    imports at run time is Keras and the ``hub`` extra (see constraints.txt).
    """
    extras = "all,export" if backend == CROSS else f"{BACKENDS[backend].extra},export-{BACKENDS[backend].extra}"
    session.install("-c", "constraints.txt", "-e", f".[{extras},hub,test]")
    session.install("-c", "constraints.txt", "--no-deps", "keras-hub")


@nox.session
@nox.parametrize("backend", [*BACKEND_NAMES, CROSS])
def tests(session: nox.Session, backend: str) -> None:
    """pytest with KERAS_BACKEND set; the `all` session runs the tests marked `cross`."""
    _install(session, backend)
    env = {"KERAS_BACKEND": BACKEND_NAMES[0] if backend == CROSS else backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    marker = "cross" if backend == CROSS else "not cross"
    session.run("pytest", "-m", marker, "-p", "no:cacheprovider", "--durations=10", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check, configured in pyproject.toml."""
    session.install("-c", "constraints.txt", "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """The quick benchmark preset on every backend (under 3 minutes on 2 cores)."""
    _install(session, CROSS)
    session.run(
        "python", "benchmarks/quick.py", "--out", "bench-out", *session.posargs, env={"TF_CPP_MIN_LOG_LEVEL": "2"}
    )
