"""The parity helper for people who write their own layers: ``backendlab.testing.assert_backends_agree``,
its pytest fixture ``backends_agree`` and ``backendlab check-layer``.

The tests marked ``cross`` run every backend in the session's warm pool (conftest's ``pool``); this
process itself imports no framework.
"""

from __future__ import annotations

import pytest
from helpers import FRAMEWORKS, PARITY_LAYERS, parity_layer, run_cli, run_python


def test_importing_the_helper_and_the_plugin_pulls_in_no_framework():
    code = (
        "import sys, backendlab.testing, backendlab.layers.pytest_plugin, backendlab.layers.cli\n"
        f"print([m for m in {('keras', *FRAMEWORKS)!r} if m in sys.modules])\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [parity_layer("no_such_factory"), "--input-shape", "4,6"],
            f"backendlab: error: layer factory '{PARITY_LAYERS}:no_such_factory': '{PARITY_LAYERS}' "
            "has no function 'no_such_factory'",
        ),
        (
            [parity_layer("dense"), "--input-shape", "4,x"],
            "backendlab: error: argument --input-shape: must be sizes separated by commas, like 4,16; got '4,x'",
        ),
    ],
    ids=["missing-factory", "bad-shape"],
)
def test_check_layer_bad_usage_is_one_line_and_exit_2(args, message):
    done = run_cli("check-layer", *args, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == message
