"""backendlab's own errors: each carries one line that says what was wrong and what to do."""


class BackendlabError(Exception):
    """Base class; the command line prints the message alone, without a traceback."""


class UsageError(BackendlabError):
    """Bad input from the user: an unknown name, a missing framework, a bad value.

    The command line exits with status 2.
    """
