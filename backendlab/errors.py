"""backendlab's own errors: each carries one line that says what was wrong and what to do."""


class BackendlabError(Exception):
    """Base class; the command line prints the message alone, without a traceback."""


class UsageError(BackendlabError):
    """Bad input from the user: an unknown name, a missing framework, a bad value.

    The command line exits with status 2.
    """


class NonFiniteError(BackendlabError):
    """Training produced NaN or inf and stopped there; the command line exits with status 1.

    ``result`` is the run up to that step (a ``TrainResult`` whose ``nonfinite`` says where and in what).
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``, for reports that quote an exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
