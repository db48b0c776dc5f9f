"""backendlab's pytest plugin (entry point ``pytest11: backendlab``): the ``backends_agree`` fixture.

    def make_layer():
        return MyLayer(8)

    def test_my_layer(backends_agree):
        backends_agree(make_layer, np.ones((4, 16), "float32"))

``backends_agree`` is :func:`backendlab.testing.assert_backends_agree` with its workers taken from
``backendlab_pool``: one warm worker per backend for the whole session, closed at its end. A
project that keeps a pool of its own can override ``backendlab_pool`` (a session fixture).

Loaded into every pytest run of an environment with backendlab installed, so it imports no
framework (nor backendlab's orchestrator) until a test asks for a fixture.
"""

from __future__ import annotations

import functools

import pytest


@pytest.fixture(scope="session")
def backendlab_pool():
    """Warm workers, one per backend, for the whole session."""
    from backendlab.workers.runner import WorkerPool

    with WorkerPool() as workers:
        yield workers


@pytest.fixture
def backends_agree(backendlab_pool):
    """``assert_backends_agree(factory, inputs, *, backends=None, rtol=1e-5, atol=1e-6, training=False,
    gradients=True, saving=True, seed=0, pool=None)``, on the session's warm workers."""
    from backendlab.layers.check import assert_backends_agree

    return functools.partial(assert_backends_agree, pool=backendlab_pool)
