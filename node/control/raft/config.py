"""The timings of Raft (election, heartbeats, lease) and its batching limits, in one
frozen dataclass.

The defaults aim at issue 6's failover targets (kill -9 of the leader → a new
leader: p50 <= 1.0 s, p99 <= 2.0 s, measured end to end over gRPC, where etcd 3.4
with its defaults gives p50 1.25 s). In the protocol alone, the time from the
leader's death to a new leader is about::

    min over the other voters of U(election_timeout_min, election_timeout_max)
      - (time since the last heartbeat, up to heartbeat_interval)
      + one RequestVote round trip (+ another timeout after a split vote)

With 0.45-0.8 s, 0.2 s heartbeats and three voters that is ~0.47 s at p50 and
~0.73 s at p99 (the simulated figures are in ``tests/bench/bench_election_sim.py``),
which leaves about half of each target for the daemon: noticing, persisting the
vote in SQLite, and the first scheduling pass.

Issue 11 (idle cost) moved the heartbeat from 0.1 s to 0.2 s, which halves an idle
cluster's Raft traffic (a message to every follower and its answer, per interval),
and the shortest timeout and the lease from 0.4 s to 0.45 s with it. Failover did
not move (simulated, 3 voters: p50 0.46-0.47 s and p99 0.72-0.73 s before and
after): a longer interval makes the time since the last heartbeat longer on
average (0.1 s instead of 0.05 s), which the longer shortest timeout takes back.
What it costs is margin: a leader whose event loop stalls for
``election_timeout_min - heartbeat_interval`` is deposed, now 0.25 s instead of
0.3 s (a leader plans in bursts of ~2 ms and encodes snapshots off its event loop).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from murmur.node.control.raft.errors import ElectionConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectionConfig:
    """Timings (seconds) of Raft with check-quorum, and the size of its messages."""

    heartbeat_interval: float = 0.2
    """How often a leader tells every follower that it leads (an AppendEntries
    without entries), all in one round, so that they last heard it at the same time
    and the first to time out after its death gets the others' pre-votes. Two fit in
    the shortest election timeout, so a lost or late one never starts an election;
    a shorter interval costs messages (every follower answers each one) for no gain
    in failover time, which it does not lengthen either (see the module doc)."""

    election_timeout_min: float = 0.45
    """Shortest time a follower waits without hearing from a leader before it
    stands for election. It bounds failover from below, and must stay well above a
    heartbeat round trip plus a stall of the event loop, or a busy leader is deposed
    for nothing."""

    election_timeout_max: float = 0.8
    """Longest such wait. Each wait is drawn anew, uniformly between min and max
    (Raft §5.2): the spread is what makes one candidate usually ask before the
    others and win in one round instead of splitting the vote; the Raft paper
    recommends a spread of the same order as the minimum."""

    lease_timeout: float = 0.45
    """A leader that has not heard from a majority of voters (itself included)
    within this time steps down (check-quorum). Equal to ``election_timeout_min``:
    a leader cut off in a minority gives up at about the time the majority can
    elect another, so a partition's minority soon has no leader that would
    schedule. It must cover at least two heartbeat rounds, or a single late answer
    would depose a healthy leader: 0.45 s is two rounds of 0.2 s and 50 ms to spare,
    so a lost heartbeat (or its answer) costs nothing."""

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
