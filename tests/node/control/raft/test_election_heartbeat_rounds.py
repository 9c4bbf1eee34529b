"""Heartbeats go out in rounds, to every follower at once, even to one sent entries
a moment before: the followers then last heard the leader at the same time, so
when it dies the first of them to time out finds the others ready to grant its
pre-vote. Sparing a follower its heartbeat because it was sent entries lately
(tried for issue 11's idle cost, where it saves nothing) let the followers' phases
drift apart, e.g. after one restarted: the first to time out was then refused by
one that had heard the leader later, and failover waited for that one's timeout."""

from __future__ import annotations

from murmur.node.control.raft import AppendEntries, AppendResponse, Outgoing
from tests.node.control.raft.test_election_replication import CONFIG, leader

INTERVAL = CONFIG.heartbeat_interval


def to(messages: tuple[Outgoing, ...]) -> list[str]:
    return [o.destination for o in messages if isinstance(o.message, AppendEntries)]


def test_a_follower_sent_entries_between_rounds_is_heartbeaten_with_the_others() -> None:
    machine, at = leader()
    machine.propose(b"x", at + INTERVAL / 4)  # both get it; only c answers
    assert to(machine.ready().messages) == ["b", "c"]
    machine.receive(AppendResponse(machine.term, "c", True, machine.last_log.index), at + 0.03)
    machine.propose(b"y", at + INTERVAL / 2)  # c alone gets this one (b's is in flight)
    assert to(machine.ready().messages) == ["c"]
    machine.receive(AppendResponse(machine.term, "b", True, machine.last_log.index), at + 0.06)
    machine.receive(AppendResponse(machine.term, "c", True, machine.last_log.index), at + 0.06)
    machine.ready()
    assert machine.next_deadline() == at + INTERVAL
    machine.tick(at + INTERVAL)
    assert to(machine.ready().messages) == ["b", "c"]


def test_an_idle_leader_wakes_once_per_interval_and_heartbeats_everyone() -> None:
    machine, at = leader()
    now = at
    for _ in range(5):
        assert machine.next_deadline() == now + INTERVAL
        now += INTERVAL
        machine.tick(now)
        assert to(machine.ready().messages) == ["b", "c"]
        for follower in ("b", "c"):
            machine.receive(AppendResponse(machine.term, follower, True, 2), now + 0.001)
        assert to(machine.ready().messages) == []
