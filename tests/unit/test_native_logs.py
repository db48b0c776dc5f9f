"""TensorFlow's C++ start-up lines are kept off the terminal; every other line on stderr is kept, in order."""

from __future__ import annotations

from helpers import run_python

CHATTER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
    "I0000 00:00:1796029637.430796    2674 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off errors.\\n"
)


def test_startup_chatter_is_dropped_and_every_other_line_kept():
    code = (
        "import os, sys\n"
        "from backendlab.native_logs import startup_chatter_dropped\n"
        "with startup_chatter_dropped():\n"
        f"    os.write(2, b'{CHATTER}before\\n{CHATTER}')\n"
        "    print('python line', file=sys.stderr)\n"
        f"    os.write(2, b'after\\n{CHATTER}')\n"
        "print('outside', file=sys.stderr)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "before\npython line\nafter\noutside\n"
