"""backendlab's own errors: each carries one line that says what was wrong and what to do."""

import re


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


def first_line(message: str) -> str:
    """The line of an error message that says what went wrong.

    Keras wraps an error raised in a layer's ``call`` as "Exception encountered when calling
    X.call()." followed by the original message in bold (ANSI) and the arguments; the original's
    last paragraph is what a reader needs, so it is taken from there, with the layer named.
    """
    text = message.strip()
    if text.startswith("Exception encountered when calling"):
        head = text.splitlines()[0].removeprefix("Exception encountered when calling ").rstrip(".")
        bold = re.search(r"\x1b\[1m(.*?)\x1b\[0m", text, re.S)
        if bold:
            inner = [p.strip() for p in bold.group(1).split("\n\n") if p.strip()]
            if inner:
                return f"{head}: {inner[-1].splitlines()[0]}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = text.splitlines()
    return lines[0] if lines else ""


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``, for reports that quote an exception."""
    return f"{type(exc).__name__}: {first_line(str(exc))}".rstrip(": ")
