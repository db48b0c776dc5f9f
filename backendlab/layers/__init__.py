"""The parity helper for users' layers: does a layer compute the same on every backend?

``check.py``: the orchestrator (public as :mod:`backendlab.testing`), which imports no framework;
``worker.py``: the jobs each backend's warm worker runs; ``cli.py``: ``backendlab check-layer``;
``pytest_plugin.py``: the ``backends_agree`` fixture (entry point ``pytest11: backendlab``).
"""
