"""The fault schedule: which fault each round injects, at whom, and for how long.

A schedule is a pure function of its seed (and of whether partitions are
possible), so a run can be repeated with the same faults in the same order;
the cluster's own timings never repeat exactly. Targets are named by role, not
by node, since who leads is known only when the round comes: ``leader``, or
the ``pick``-th of the other nodes (sorted by name, modulo their count).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class FaultKind(enum.Enum):
    KILL_LEADER = "kill-leader"
    """kill -9 the leader, restart it after ``pause``."""
    KILL_FOLLOWER = "kill-follower"
    """kill -9 one other node, restart it after ``pause``."""
    KILL_TWO = "kill-two"
    """kill -9 two nodes (the leader among them when ``with_leader``): a minority of five."""
    PARTITION = "partition"
    """Cut ``size`` nodes (1 or 2; the leader among them when ``with_leader``) off the
    majority for ``pause`` seconds; the minority still reach each other."""


@dataclass(frozen=True)
class FaultStep:
    round: int
    kind: FaultKind
    pause: float
    """Seconds between the fault and its repair (restart or heal)."""
    pick: int
    """Which non-leader node(s): index into the sorted others, modulo their count."""
    with_leader: bool = False
    size: int = 1
    settle: float = 1.0
    """Seconds of quiet load after the cluster agreed on a leader again."""

    def describe(self) -> str:
        leader = self.kind is FaultKind.KILL_LEADER or (
            self.with_leader and self.kind in (FaultKind.KILL_TWO, FaultKind.PARTITION)
        )
        who = "leader" if leader else "others"
        size = f" size {self.size}" if self.kind is FaultKind.PARTITION else ""
        return f"{self.kind.value} ({who}{size}, {self.pause:.1f} s)"


def random_schedule(seed: int, rounds: int, *, partitions: bool) -> list[FaultStep]:
    """``rounds`` steps drawn from ``seed``. Without partitions (no network
    namespaces), their share goes to kills of two nodes."""
    rng = random.Random(seed)
    kinds = [FaultKind.KILL_LEADER, FaultKind.KILL_FOLLOWER, FaultKind.KILL_TWO]
    weights = [3, 2, 2]
    if partitions:
        kinds.append(FaultKind.PARTITION)
        weights.append(3)
    steps = []
    for number in range(1, rounds + 1):
        kind = rng.choices(kinds, weights)[0]
        steps.append(
            FaultStep(
                round=number,
                kind=kind,
                pause=round(rng.uniform(0.0, 15.0) if kind is not FaultKind.PARTITION
                            else rng.uniform(3.0, 15.0), 1),
                pick=rng.randrange(4),
                with_leader=rng.random() < 0.5,
                size=rng.choice((1, 2)),
                settle=round(rng.uniform(0.5, 3.0), 1),
            )
        )  # fmt: skip
    return steps


def short_schedule(*, partitions: bool) -> list[FaultStep]:
    """The ``make test`` version: the leader killed, another node killed and
    restarted, then (where namespaces exist) the leader and one more cut off."""
    steps = [
        FaultStep(round=1, kind=FaultKind.KILL_LEADER, pause=4.0, pick=0, settle=1.0),
        FaultStep(round=2, kind=FaultKind.KILL_FOLLOWER, pause=2.0, pick=1, settle=1.0),
    ]
    if partitions:
        steps.append(
            FaultStep(
                round=3, kind=FaultKind.PARTITION, pause=8.0, pick=2,
                with_leader=True, size=2, settle=1.0,
            )
        )  # fmt: skip
    return steps
