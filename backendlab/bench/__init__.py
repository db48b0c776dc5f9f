"""Throughput benchmarks across backends (issue 5)."""
