"""``--processes N``: which failed process the launcher names as the cause of the others' ends."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from backendlab.workers.launch import cause
from backendlab.workers.protocol import USAGE_PREFIX


@dataclass
class Ended:
    """What the launcher knows of one process that ended: its stderr, whether it noted its failure, when."""

    failed_at: float
    noted: bool
    lines: list[str] = field(default_factory=list)

    def found_bad_input(self, code: int) -> bool:
        return code == 2 and any(line.startswith(USAGE_PREFIX) for line in self.lines)


BAD_INPUT = f"{USAGE_PREFIX}x_train has NaN at index (150, 3): remove or replace non-finite values before training"


def test_bad_input_is_the_cause_though_a_peer_was_killed_meanwhile():
    # Process 0 finds the bad input and leaves; JAX's coordination service then aborts process 1.
    started = [Ended(1.0, True, [BAD_INPUT]), Ended(1.2, False, ["F1130 client.h:80] Terminating process"])]
    assert cause({0: 2, 1: -signal.SIGABRT}, started) == 0


def test_a_killed_process_is_the_cause_of_the_failures_it_left_behind():
    # Process 1 is killed; process 0 notes its own failure (a peer gone) before process 1's end is heard.
    started = [Ended(1.0, True, ["RuntimeError: connection reset by peer"]), Ended(1.5, False)]
    assert cause({0: 1, 1: -signal.SIGKILL}, started) == 1


def test_among_noted_failures_the_first_is_the_cause():
    started = [Ended(2.0, True, ["RuntimeError: a peer is gone"]), Ended(1.0, True, ["RuntimeError: injected"])]
    assert cause({0: 1, 1: 1}, started) == 1
