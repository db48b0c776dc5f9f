"""Throughput benchmarks across backends (issue 5)."""

from backendlab import lazy

lazy.callable_package(__name__, "backendlab.api:bench")  # backendlab.bench(...) runs the command
