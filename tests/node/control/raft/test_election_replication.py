"""Unit tests of the Raft machine's log: replication, commit, flow control,
snapshots, voter changes and learners, driven by hand (pre-vote off)."""

from __future__ import annotations

import random

import pytest

from murmur.node.control.raft import (
    NEW_NODE,
    AppendEntries,
    AppendResponse,
    CompactionError,
    ElectionConfig,
    ElectionSetupError,
    EntryKind,
    InstallSnapshot,
    LogEntry,
    LogPosition,
    NotLeaderError,
    Outgoing,
    PersistentState,
    Raft,
    RequestVote,
    Role,
    Snapshot,
    VoterChangeError,
    VoteResponse,
)

CONFIG = ElectionConfig(pre_vote=False)
VOTERS = frozenset({"a", "b", "c"})
FIRST = LogEntry(0, 1, EntryKind.VOTERS, voters=VOTERS)
START = FIRST.position


def command(term: int, index: int) -> LogEntry:
    return LogEntry(term, index, EntryKind.COMMAND, f"{index}".encode())


def make(
    node_id: str = "a",
    *,
    entries: tuple[LogEntry, ...] = (FIRST,),
    snapshot: Snapshot | None = None,
    hard_state: PersistentState = NEW_NODE,
    config: ElectionConfig = CONFIG,
) -> Raft:
    return Raft(
        node_id,
        config=config,
        rng=random.Random(1),
        now=0.0,
        hard_state=hard_state,
        snapshot=snapshot,
        entries=entries,
    )


def leader(
    *, entries: tuple[LogEntry, ...] = (FIRST,), config: ElectionConfig = CONFIG
) -> tuple[Raft, float]:
    """``a`` elected by ``b``'s vote; its NOOP sent and acknowledged by b and c."""
    machine = make(entries=entries, config=config)
    at = machine.next_deadline()
    machine.tick(at)
    machine.receive(VoteResponse(machine.term, "b", granted=True), at)
    machine.ready()
    for follower in ("b", "c"):
        machine.receive(AppendResponse(machine.term, follower, True, machine.last_log.index), at)
    machine.ready()
    return machine, at


def appends(ready_messages: tuple[Outgoing, ...], to: str) -> list[AppendEntries]:
    return [
        o.message
        for o in ready_messages
        if o.destination == to and isinstance(o.message, AppendEntries)
    ]


def test_propose_needs_the_leader() -> None:
    follower = make("b")
    follower.receive(AppendEntries(1, "a", START, (), commit=0), 0.1)
    with pytest.raises(NotLeaderError) as caught:
        follower.propose(b"x", 0.2)
    assert caught.value.leader == "a"
    with pytest.raises(NotLeaderError):
        follower.change_voters(VOTERS - {"c"}, 0.2)
    with pytest.raises(NotLeaderError):
        follower.add_learner("d")


def test_proposal_goes_out_at_the_next_ready_and_commits_on_a_majority() -> None:
    machine, at = leader()
    assert machine.commit_index == 2
    position = machine.propose(b"x", at + 0.01)
    assert position == LogPosition(1, 3)
    ready = machine.ready()
    entry = LogEntry(1, 3, EntryKind.COMMAND, b"x")
    assert ready.entries == (entry,)
    assert appends(ready.messages, "b") == [
        AppendEntries(1, "a", LogPosition(1, 2), (entry,), commit=2)
    ]
    assert ready.committed == ()
    machine.receive(AppendResponse(1, "c", True, 3), at + 0.02)
    assert machine.commit_index == 3
    assert machine.ready().committed == (entry,)
    assert machine.match_index("c") == 3
    assert machine.match_index("b") == 2
    assert machine.match_index("a") == 3


def test_one_batch_in_flight_per_follower_and_the_rest_batched() -> None:
    machine, at = leader()
    machine.propose(b"1", at)
    assert len(appends(machine.ready().messages, "b")) == 1
    machine.propose(b"2", at)
    machine.propose(b"3", at)
    assert appends(machine.ready().messages, "b") == []  # 3 waits for the answer
    machine.receive(AppendResponse(1, "b", True, 3), at + 0.001)
    (batch,) = appends(machine.ready().messages, "b")
    assert [e.data for e in batch.entries] == [b"2", b"3"]
    assert batch.previous == LogPosition(1, 3)


def test_batches_respect_the_entry_limit() -> None:
    config = ElectionConfig(pre_vote=False, max_entries_per_message=2)
    machine, at = leader(config=config)
    for number in range(5):
        machine.propose(b"%d" % number, at)
    (batch,) = appends(machine.ready().messages, "b")
    assert len(batch.entries) == 2


def test_a_lost_batch_is_resent_after_a_heartbeat_interval() -> None:
    machine, at = leader()
    machine.propose(b"x", at + 0.01)
    (first,) = appends(machine.ready().messages, "b")
    # While it is in flight, heartbeats vouch only for the matched prefix.
    machine.tick(machine.next_deadline())
    (heartbeat,) = appends(machine.ready().messages, "b")
    assert heartbeat.entries == ()
    assert heartbeat.previous == LogPosition(1, 2)
    later = at + 2 * CONFIG.heartbeat_interval
    machine.receive(AppendResponse(1, "c", True, 3), later)  # keep the lease
    machine.tick(machine.next_deadline())
    (again,) = appends(machine.ready().messages, "b")
    assert (again.previous, again.entries) == (first.previous, first.entries)


def test_leader_commits_only_by_counting_an_entry_of_its_term() -> None:
    """§5.4.2: old-term entries are committed only through one of the current term."""
    old = (FIRST, command(1, 2))
    machine = make(entries=old, hard_state=PersistentState(term=1))
    at = machine.next_deadline()
    machine.tick(at)
    machine.receive(VoteResponse(2, "b", granted=True), at)
    machine.ready()
    machine.receive(AppendResponse(2, "b", True, 2), at)  # b holds entry 2 (term 1)
    assert machine.commit_index == 0
    machine.receive(AppendResponse(2, "b", True, 3), at)  # and the NOOP of term 2
    assert machine.commit_index == 3
    assert [e.index for e in machine.ready().committed] == [1, 2, 3]


def test_refusal_hint_makes_the_leader_skip_back_at_once() -> None:
    entries = (FIRST, *(command(1, i) for i in range(2, 11)))
    machine = make(entries=entries, hard_state=PersistentState(term=1))
    at = machine.next_deadline()
    machine.tick(at)
    machine.receive(VoteResponse(2, "c", granted=True), at)
    machine.ready()
    machine.receive(AppendResponse(2, "b", False, 3), at)  # b's log ends at 3
    (retry,) = appends(machine.ready().messages, "b")
    assert retry.previous == LogPosition(1, 3)
    assert [e.index for e in retry.entries] == list(range(4, 12))


def test_follower_checks_previous_and_refuses_with_its_last_index() -> None:
    machine = make("b")
    machine.receive(AppendEntries(1, "a", LogPosition(1, 5), (command(1, 6),), commit=0), 0.1)
    assert machine.ready().messages == (Outgoing("a", AppendResponse(1, "b", False, 1)),)
    machine.receive(AppendEntries(1, "a", LogPosition(1, 1), (command(1, 2),), commit=0), 0.1)
    assert machine.ready().messages == (Outgoing("a", AppendResponse(1, "b", False, 1)),)


def test_follower_truncates_a_conflicting_suffix() -> None:
    mine = (FIRST, command(1, 2), command(1, 3), command(1, 4))
    machine = make("b", entries=mine, hard_state=PersistentState(term=1))
    new = (command(2, 3),)
    machine.receive(AppendEntries(2, "c", LogPosition(1, 2), new, commit=3), 0.1)
    ready = machine.ready()
    assert ready.truncate_from == 3
    assert ready.entries == new
    assert ready.messages == (Outgoing("c", AppendResponse(2, "b", True, 3)),)
    assert [e.index for e in ready.committed] == [1, 2, 3]
    assert machine.last_log == LogPosition(2, 3)


def test_follower_keeps_entries_it_already_holds() -> None:
    mine = (FIRST, command(1, 2), command(1, 3))
    machine = make("b", entries=mine, hard_state=PersistentState(term=1))
    machine.receive(AppendEntries(1, "a", START, (command(1, 2),), commit=0), 0.1)
    ready = machine.ready()
    assert ready.truncate_from is None
    assert ready.entries == ()
    assert machine.last_log == LogPosition(1, 3)  # a stale message does not cut the log
    assert ready.messages == (Outgoing("a", AppendResponse(1, "b", True, 2)),)


def test_follower_commit_is_bounded_by_the_last_new_entry() -> None:
    mine = (FIRST, command(1, 2), command(1, 3), command(1, 4))
    machine = make("b", entries=mine, hard_state=PersistentState(term=1))
    machine.receive(AppendEntries(1, "a", START, (command(1, 2),), commit=4), 0.1)
    assert machine.commit_index == 2  # 3 and 4 are not vouched for by this message


def test_ready_is_empty_when_nothing_happened() -> None:
    machine = make("b")
    assert machine.ready().empty
    machine.receive(AppendEntries(1, "a", START, (), commit=0), 0.1)
    assert not machine.ready().empty
    assert machine.ready().empty


# --- snapshots ----------------------------------------------------------------------


def snapshot_at(index: int, term: int = 1, voters: frozenset[str] = VOTERS) -> Snapshot:
    return Snapshot(LogPosition(term, index), voters, b"state@%d" % index)


def test_compact_drops_applied_entries() -> None:
    machine, at = leader()
    for number in range(3):
        machine.propose(b"%d" % number, at)
    machine.receive(AppendResponse(1, "b", True, 5), at)
    machine.ready()
    with pytest.raises(CompactionError):
        machine.compact(snapshot_at(6))  # not applied
    with pytest.raises(CompactionError):
        machine.compact(snapshot_at(4, term=9))  # not this log's entry
    with pytest.raises(CompactionError):
        machine.compact(snapshot_at(4, voters=frozenset({"a"})))
    machine.compact(snapshot_at(4))
    assert machine.first_index == 5
    assert machine.last_log == LogPosition(1, 5)
    machine.compact(snapshot_at(3))  # older: ignored
    assert machine.first_index == 5


def test_a_lagging_follower_gets_the_snapshot() -> None:
    machine, at = leader()
    for number in range(3):
        machine.propose(b"%d" % number, at)
    machine.receive(AppendResponse(1, "b", True, 5), at)
    machine.ready()
    snapshot = snapshot_at(4)
    machine.compact(snapshot)
    machine.receive(AppendResponse(1, "c", False, 1), at)  # c lost its log: back to 1
    ready = machine.ready()
    assert ready.messages == (Outgoing("c", InstallSnapshot(1, "a", snapshot)),)
    machine.receive(AppendResponse(1, "c", True, 4), at)
    (rest,) = appends(machine.ready().messages, "c")
    assert rest.previous == LogPosition(1, 4)
    assert [e.index for e in rest.entries] == [5]


def test_follower_installs_a_snapshot_that_covers_its_log() -> None:
    machine = make("c", entries=(FIRST, command(1, 2), command(5, 3)))
    snapshot = snapshot_at(4, term=6)
    machine.receive(InstallSnapshot(6, "a", snapshot), 0.1)
    ready = machine.ready()
    assert ready.snapshot == snapshot
    assert ready.truncate_from is None  # nothing beyond the snapshot to remove
    assert ready.committed == ()
    assert ready.messages == (Outgoing("a", AppendResponse(6, "c", True, 4)),)
    assert (machine.commit_index, machine.first_index, machine.last_log) == (
        4,
        5,
        LogPosition(6, 4),
    )


def test_follower_drops_a_conflicting_log_beyond_the_snapshot() -> None:
    mine = (FIRST, command(1, 2), command(1, 3), command(1, 4), command(1, 5))
    machine = make("c", entries=mine)
    machine.receive(InstallSnapshot(2, "a", snapshot_at(3, term=2)), 0.1)
    ready = machine.ready()
    assert ready.truncate_from == 4
    assert machine.last_log == LogPosition(2, 3)


def test_follower_keeps_the_suffix_after_a_matching_snapshot() -> None:
    mine = (FIRST, command(1, 2), command(1, 3), command(1, 4))
    machine = make("c", entries=mine)
    machine.receive(InstallSnapshot(1, "a", snapshot_at(2)), 0.1)
    ready = machine.ready()
    assert ready.truncate_from is None
    assert machine.last_log == LogPosition(1, 4)
    assert machine.first_index == 3


def test_restart_from_a_snapshot() -> None:
    snapshot = snapshot_at(10, voters=frozenset({"a", "b"}))
    machine = make("a", snapshot=snapshot, entries=(command(1, 11),))
    assert machine.commit_index == 10
    assert machine.first_index == 11
    assert machine.voters == {"a", "b"}
    with pytest.raises(ElectionSetupError):
        make("a", snapshot=snapshot, entries=(command(1, 12),))


# --- voter changes and learners ------------------------------------------------------


def test_voter_change_waits_for_the_noop_and_for_the_previous_change() -> None:
    machine = make()
    at = machine.next_deadline()
    machine.tick(at)
    machine.receive(VoteResponse(1, "b", granted=True), at)
    with pytest.raises(VoterChangeError, match="not committed an entry of term 1"):
        machine.change_voters(VOTERS | {"d"}, at)
    machine.receive(AppendResponse(1, "b", True, 2), at)
    with pytest.raises(VoterChangeError, match="one voter at a time"):
        machine.change_voters(frozenset({"a", "d", "e"}), at)
    assert not machine.voter_change_pending
    position = machine.change_voters(VOTERS - {"c"}, at)
    assert machine.voters == {"a", "b"}  # at once, on append
    assert machine.voter_change_pending
    with pytest.raises(VoterChangeError, match="not committed yet"):
        machine.change_voters(frozenset({"a"}), at)
    machine.receive(AppendResponse(1, "b", True, position.index), at)
    machine.change_voters(frozenset({"a"}), at)
    assert machine.commit_index == 4  # a lone voter commits on append
    with pytest.raises(VoterChangeError, match="last voter"):
        machine.change_voters(frozenset(), at)


def test_a_voters_entry_takes_effect_on_append_and_truncation_reverts_it() -> None:
    machine = make("b", hard_state=PersistentState(term=1))
    change = LogEntry(1, 2, EntryKind.VOTERS, voters=VOTERS | {"d"})
    machine.receive(AppendEntries(1, "a", START, (change,), commit=1), 0.1)
    assert machine.voters == VOTERS | {"d"}
    machine.receive(AppendEntries(2, "c", START, (command(2, 2),), commit=1), 0.2)
    assert machine.voters == VOTERS


def test_learners_are_replicated_to_but_never_counted() -> None:
    machine, at = leader()
    machine.add_learner("d")
    machine.add_learner("a")  # itself: nothing to do
    assert machine.learners == {"d"}
    assert "d" in {o.destination for o in machine.ready().messages}
    machine.propose(b"x", at)
    machine.ready()
    machine.receive(AppendResponse(1, "d", True, 3), at)
    assert machine.match_index("d") == 3
    assert machine.commit_index == 2  # d does not count
    assert machine.last_contact("d") == at
    machine.remove_learner("d")
    assert machine.learners == frozenset()
    assert machine.match_index("d") == 0


def test_promoting_a_learner_counts_it_from_then_on() -> None:
    machine, at = leader()
    machine.add_learner("d")
    machine.ready()
    machine.receive(AppendResponse(1, "d", True, 2), at)
    position = machine.change_voters(VOTERS | {"d"}, at)
    assert machine.learners == frozenset()
    machine.receive(AppendResponse(1, "b", True, position.index), at)
    assert machine.commit_index == 2  # 2 of 4 is not a majority
    machine.receive(AppendResponse(1, "d", True, position.index), at)
    assert machine.commit_index == position.index


def test_a_leader_that_removed_itself_steps_down_once_that_commits() -> None:
    machine, at = leader()
    position = machine.change_voters(VOTERS - {"a"}, at)
    assert machine.is_leader  # it leads the new voters until the change commits
    machine.ready()
    machine.receive(AppendResponse(1, "b", True, position.index), at)
    assert machine.is_leader  # a no longer counts itself: b and c are needed
    machine.receive(AppendResponse(1, "c", True, position.index), at)
    assert machine.role is Role.FOLLOWER
    assert machine.commit_index == position.index
    assert machine.next_deadline() == float("inf")  # a non-voter never stands


def test_a_node_whose_uncommitted_removal_ends_its_log_may_stand() -> None:
    """It may hold the only log a leader could come from; it counts the new voters."""
    removal = LogEntry(1, 2, EntryKind.VOTERS, voters=frozenset({"b"}))
    voters = frozenset({"a", "b"})
    first = LogEntry(0, 1, EntryKind.VOTERS, voters=voters)
    machine = make(entries=(first, removal), hard_state=PersistentState(term=1))
    at = machine.next_deadline()
    assert at != float("inf")
    machine.tick(at)
    assert machine.ready().messages == (Outgoing("b", RequestVote(2, "a", LogPosition(1, 2))),)
    machine.receive(VoteResponse(2, "b", granted=True), at)
    assert machine.is_leader
    machine.ready()
    machine.receive(AppendResponse(2, "b", True, 3), at)
    assert machine.role is Role.FOLLOWER  # its removal is committed: done


def test_vote_requests_are_heard_from_voters_of_uncommitted_sets() -> None:
    """b holds an uncommitted change that removes a; a, which may stand to commit it,
    must still get b's answer."""
    removal = LogEntry(1, 2, EntryKind.VOTERS, voters=frozenset({"b", "c"}))
    machine = make("b", entries=(FIRST, removal), hard_state=PersistentState(term=1))
    machine.receive(RequestVote(2, "a", LogPosition(1, 2)), 0.1)
    assert machine.ready().messages == (Outgoing("a", VoteResponse(2, "b", granted=True)),)


def test_a_snapshot_that_drops_the_log_drops_its_voter_changes_too() -> None:
    change = LogEntry(1, 3, EntryKind.VOTERS, voters=VOTERS | {"d"})
    machine = make("c", entries=(FIRST, command(1, 2), change, command(1, 4)))
    assert machine.voters == VOTERS | {"d"}
    machine.receive(InstallSnapshot(2, "a", snapshot_at(2, term=2)), 0.1)
    assert machine.voters == VOTERS
    machine.receive(AppendEntries(2, "a", LogPosition(2, 2), (command(2, 3),), commit=3), 0.2)
    assert machine.voters == VOTERS
