"""backendlab's own errors: each carries one line that says what was wrong and what to do."""


class BackendlabError(Exception):
    """Base class; the command line prints the message alone, without a traceback."""


class UsageError(BackendlabError):
    """Bad input from the user: an unknown name, a missing framework, a bad value.

    The command line exits with status 2.
    """


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``, for reports that quote an exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
