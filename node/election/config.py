"""The timings of Raft (election, heartbeats, lease) and its batching limits, in one
frozen dataclass.

The defaults aim at issue 6's failover targets (kill -9 of the leader → a new
leader: p50 <= 1.0 s, p99 <= 2.0 s, measured end to end over gRPC, where etcd 3.4
with its defaults gives p50 1.25 s). In the protocol alone, the time from the
leader's death to a new leader is about::

    min over the other voters of U(election_timeout_min, election_timeout_max)
      - (time since the last heartbeat, up to heartbeat_interval)
      + one RequestVote round trip (+ another timeout after a split vote)

With 0.4-0.8 s and three voters that is ~0.5 s at p50 and ~0.8 s at p99 (the
simulated figures are in ``tests/bench/bench_election_sim.py``), which leaves about
half of each target for the daemon: noticing, persisting the vote in SQLite, and
the first scheduling pass.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from node.election.errors import ElectionConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectionConfig:
    """Timings (seconds) of Raft with check-quorum, and the size of its messages."""

    heartbeat_interval: float = 0.1
    """How often a leader tells every voter that it leads (an AppendEntries without
    entries). Four heartbeats fit in the shortest election timeout, so one or two
    lost ones never start an election; a shorter interval costs messages (every
    voter answers each one) for no gain in failover time."""

    election_timeout_min: float = 0.4
    """Shortest time a follower waits without hearing from a leader before it
    stands for election. It bounds failover from below, and must stay well above a
    heartbeat round trip plus a stall of the event loop, or a busy leader is deposed
    for nothing."""

    election_timeout_max: float = 0.8
    """Longest such wait. Each wait is drawn anew, uniformly between min and max
    (Raft §5.2): the spread is what makes one candidate usually ask before the
    others and win in one round instead of splitting the vote; the Raft paper
    recommends a spread of the same order as the minimum."""

    lease_timeout: float = 0.4
    """A leader that has not heard from a majority of voters (itself included)
    within this time steps down (check-quorum). Equal to ``election_timeout_min``:
    a leader cut off in a minority gives up at about the time the majority can
    elect another, so a partition's minority soon has no leader that would
    schedule. It must cover at least two heartbeat rounds, or a single late answer
    would depose a healthy leader."""

    pre_vote: bool = True
    """Before standing, ask the voters whether they would vote (Raft §9.6) and stand
    only with a majority's yes. A voter says no while it has heard from a leader
    within ``election_timeout_min``, or when the asker's log is behind its own. A
    node cut off from the cluster then keeps its term instead of raising it at
    every timeout, and on its return does not depose a working leader. Costs one
    round trip per election."""

    max_entries_per_message: int = 512
    """Most log entries in one AppendEntries. A leader keeps at most one message with
    entries in flight per follower and batches whatever was proposed meanwhile into
    the next one: throughput comes from the batch, latency from sending it at once."""

    max_bytes_per_message: int = 1 << 20
    """Most bytes of entries (data, voter names and a small per-entry overhead) in one
    AppendEntries; a single larger entry still goes alone."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool):
                continue
            if not value > 0:
                raise ElectionConfigError(f"election config: {field.name} must be > 0, got {value}")
        if self.election_timeout_max <= self.election_timeout_min:
            raise ElectionConfigError(
                "election config: election_timeout_max must be above election_timeout_min "
                f"({self.election_timeout_max} <= {self.election_timeout_min}); "
                "without a spread, voters time out together and split the vote"
            )
        if self.heartbeat_interval >= self.election_timeout_min:
            raise ElectionConfigError(
                "election config: heartbeat_interval must be shorter than "
                f"election_timeout_min ({self.heartbeat_interval} >= "
                f"{self.election_timeout_min}), or followers depose a live leader"
            )
        if self.lease_timeout < 2 * self.heartbeat_interval:
            raise ElectionConfigError(
                "election config: lease_timeout must cover two heartbeat rounds "
                f"({self.lease_timeout} < 2 * {self.heartbeat_interval})"
            )

    def quorum(self, voters: int) -> int:
        """Votes (or contacts) that make a majority of ``voters``."""
        return voters // 2 + 1
