from backendlab.errors import UsageError


def add_compare_arguments(parser) -> None:
    pass


def run_compare(args) -> int:
    raise UsageError("compare is not built yet")
