"""Unit tests of the Raft state machine's election, driven by hand.

Most tests run with pre-vote off, to test Raft's core transitions one at a time;
the pre-vote tests at the end turn it on (the default). Replication, snapshots and
voter changes are in ``test_election_replication.py``.
"""

from __future__ import annotations

import math
import random

import pytest

from murmur.node.control.raft import (
    AppendEntries,
    AppendResponse,
    ElectionConfig,
    EntryKind,
    LogEntry,
    LogPosition,
    Outgoing,
    PersistentState,
    PreVote,
    PreVoteResponse,
    Raft,
    RequestVote,
    Role,
    VoteResponse,
    bootstrap_entry,
)

CONFIG = ElectionConfig(pre_vote=False)
PRE_VOTE = ElectionConfig()
NEW_NODE = PersistentState()
VOTERS = frozenset({"a", "b", "c"})
START = LogPosition(0, 1)
"""Where a fresh member's log ends: the VOTERS entry naming the first voters."""


def voters_entry(voters: frozenset[str] = VOTERS) -> LogEntry:
    return LogEntry(0, 1, EntryKind.VOTERS, voters=voters)


def make(
    node_id: str = "a",
    voters: frozenset[str] = VOTERS,
    *,
    now: float = 0.0,
    hard_state: PersistentState = NEW_NODE,
    more: tuple[LogEntry, ...] = (),
    seed: int = 1,
    config: ElectionConfig = CONFIG,
) -> Raft:
    """A member of ``voters`` whose log is the VOTERS entry followed by ``more``."""
    return Raft(
        node_id,
        config=config,
        rng=random.Random(seed),
        now=now,
        hard_state=hard_state,
        entries=(voters_entry(voters), *more),
    )


def commands(term: int, first: int, last: int) -> tuple[LogEntry, ...]:
    return tuple(
        LogEntry(term, i, EntryKind.COMMAND, f"{i}".encode()) for i in range(first, last + 1)
    )


def sent(machine: Raft) -> list[Outgoing]:
    return list(machine.ready().messages)


def stand(machine: Raft) -> tuple[float, list[Outgoing]]:
    """Tick the machine at its election deadline."""
    at = machine.next_deadline()
    machine.tick(at)
    return at, sent(machine)


def elect(machine: Raft) -> float:
    """Make ``machine`` (a candidate-to-be among three) the leader; returns the time."""
    at, _ = stand(machine)
    machine.receive(VoteResponse(machine.term, "b", granted=True), at)
    assert machine.is_leader
    machine.ready()
    return at


def answer(machine: Raft, follower: str, now: float, *, match: int | None = None) -> None:
    """``follower`` acknowledges the leader's whole log."""
    index = machine.last_log.index if match is None else match
    machine.receive(AppendResponse(machine.term, follower, True, index), now)


def test_starts_as_follower_with_its_saved_term_and_vote() -> None:
    machine = make(hard_state=PersistentState(term=7, voted_for="b"))
    assert machine.role is Role.FOLLOWER
    assert (machine.term, machine.voted_for) == (7, "b")
    assert machine.leader is None
    assert machine.lease_expires_at() is None
    assert machine.voters == VOTERS
    assert machine.ready().empty


def test_a_node_with_no_voters_never_stands() -> None:
    machine = Raft("z", config=CONFIG, rng=random.Random(1), now=0.0)
    assert machine.voters == frozenset()
    assert machine.next_deadline() == math.inf
    machine.tick(1000.0)
    assert machine.role is Role.FOLLOWER
    assert machine.ready().empty


def test_election_timeout_is_drawn_between_min_and_max() -> None:
    deadlines = [make(seed=seed, now=10.0).next_deadline() - 10.0 for seed in range(200)]
    assert all(CONFIG.election_timeout_min <= d <= CONFIG.election_timeout_max for d in deadlines)
    assert len(set(deadlines)) == len(deadlines)


def test_same_seed_same_timeouts() -> None:
    assert make(seed=5).next_deadline() == make(seed=5).next_deadline()


def test_nothing_happens_before_the_election_timeout() -> None:
    machine = make()
    machine.tick(machine.next_deadline() - 1e-6)
    assert machine.ready().empty
    assert machine.role is Role.FOLLOWER


def test_timeout_starts_an_election_with_the_real_log_end() -> None:
    machine = make(hard_state=PersistentState(term=3), more=commands(2, 2, 9))
    at, out = stand(machine)
    assert machine.role is Role.CANDIDATE
    assert (machine.term, machine.voted_for) == (4, "a")
    request = RequestVote(4, "a", LogPosition(2, 9))
    assert out == [Outgoing("b", request), Outgoing("c", request)]
    assert machine.next_deadline() >= at + CONFIG.election_timeout_min


def test_the_vote_is_in_the_ready_before_the_requests() -> None:
    machine = make()
    machine.tick(machine.next_deadline())
    ready = machine.ready()
    assert ready.hard_state == PersistentState(1, "a")
    assert len(ready.messages) == 2
    assert machine.ready().hard_state is None  # reported once


def test_candidate_times_out_again_into_a_newer_term() -> None:
    machine = make()
    stand(machine)
    stand(machine)
    assert machine.role is Role.CANDIDATE
    assert machine.term == 2


def test_new_leader_appends_a_noop_and_sends_it_at_once() -> None:
    machine = make()
    at, _ = stand(machine)
    machine.receive(VoteResponse(1, "b", granted=True), at + 0.001)
    assert machine.is_leader
    assert machine.leader == "a"
    ready = machine.ready()
    noop = LogEntry(1, 2, EntryKind.NOOP)
    assert ready.entries == (noop,)
    append = AppendEntries(1, "a", START, (noop,), commit=0)
    assert list(ready.messages) == [Outgoing("b", append), Outgoing("c", append)]
    assert machine.next_deadline() == pytest.approx(at + 0.001 + CONFIG.heartbeat_interval)


def test_refusals_and_stale_or_duplicate_grants_do_not_elect() -> None:
    machine = make(voters=frozenset("abcde"))
    at, _ = stand(machine)
    machine.receive(VoteResponse(1, "b", granted=False), at)
    machine.receive(VoteResponse(1, "c", granted=True), at)
    machine.receive(VoteResponse(1, "c", granted=True), at)
    machine.receive(VoteResponse(1, "z", granted=True), at)  # not a voter
    assert machine.role is Role.CANDIDATE
    stand(machine)  # term 2
    machine.receive(VoteResponse(1, "d", granted=True), at)  # term 1: stale
    machine.receive(VoteResponse(2, "d", granted=True), at)
    assert machine.role is Role.CANDIDATE
    machine.receive(VoteResponse(2, "e", granted=True), at)
    assert machine.is_leader
    assert machine.term == 2


def test_bootstrap_entry_makes_a_lone_voter() -> None:
    entry = bootstrap_entry("a")
    assert entry == LogEntry(0, 1, EntryKind.VOTERS, voters=frozenset({"a"}))


def test_lone_voter_elects_itself_at_its_first_tick_and_commits_at_once() -> None:
    machine = Raft(
        "a", config=CONFIG, rng=random.Random(1), now=5.0, entries=(bootstrap_entry("a"),)
    )
    assert machine.next_deadline() == 5.0
    machine.tick(5.0)
    assert machine.is_leader
    assert (machine.term, machine.voted_for) == (1, "a")
    assert machine.lease_expires_at() == math.inf
    ready = machine.ready()
    assert ready.messages == ()
    assert ready.committed == (bootstrap_entry("a"), LogEntry(1, 2, EntryKind.NOOP))
    position = machine.propose(b"x", 6.0)
    assert machine.ready().committed == (LogEntry(1, 3, EntryKind.COMMAND, b"x"),)
    assert position == LogPosition(1, 3)
    machine.tick(1000.0)  # no peers: never steps down
    assert machine.is_leader


def test_grants_one_vote_per_term() -> None:
    machine = make("b")
    machine.receive(RequestVote(1, "a", START), 0.1)
    assert sent(machine) == [Outgoing("a", VoteResponse(1, "b", granted=True))]
    assert (machine.term, machine.voted_for) == (1, "a")
    machine.receive(RequestVote(1, "c", START), 0.2)
    assert sent(machine) == [Outgoing("c", VoteResponse(1, "b", granted=False))]
    # The same candidate asking again (its request was retried) is granted again.
    machine.receive(RequestVote(1, "a", START), 0.3)
    assert sent(machine) == [Outgoing("a", VoteResponse(1, "b", granted=True))]
    # A new term frees the vote.
    machine.receive(RequestVote(2, "c", START), 0.4)
    assert sent(machine) == [Outgoing("c", VoteResponse(2, "b", granted=True))]


def test_restarted_voter_remembers_its_vote() -> None:
    first = make("b")
    first.receive(RequestVote(3, "a", START), 0.1)
    saved = first.ready().hard_state
    assert saved is not None
    again = make("b", hard_state=saved, seed=2)
    again.receive(RequestVote(3, "c", START), 0.2)
    assert sent(again) == [Outgoing("c", VoteResponse(3, "b", granted=False))]


def test_refuses_a_candidate_whose_log_is_behind() -> None:
    log = commands(2, 2, 5)
    machine = make("b", more=log)
    for behind in (LogPosition(1, 50), LogPosition(2, 4)):
        machine.receive(RequestVote(4, "a", behind), 0.1)
        assert sent(machine) == [Outgoing("a", VoteResponse(4, "b", granted=False))]
    # Its term is adopted all the same, with no vote cast.
    assert (machine.term, machine.voted_for) == (4, None)
    for ahead in (LogPosition(2, 5), LogPosition(3, 0)):
        machine = make("b", more=log)
        machine.receive(RequestVote(4, "a", ahead), 0.1)
        assert sent(machine) == [Outgoing("a", VoteResponse(4, "b", granted=True))]


def test_refuses_a_request_from_an_older_term() -> None:
    machine = make("b", hard_state=PersistentState(term=5))
    machine.receive(RequestVote(4, "a", START), 0.1)
    assert sent(machine) == [Outgoing("a", VoteResponse(5, "b", granted=False))]
    assert (machine.term, machine.voted_for) == (5, None)


def test_granting_a_vote_resets_the_election_timer() -> None:
    machine = make("b")
    before = machine.next_deadline()
    machine.receive(RequestVote(1, "a", START), before - 0.01)
    assert machine.next_deadline() >= before - 0.01 + CONFIG.election_timeout_min


def test_refusing_a_vote_does_not_reset_the_election_timer() -> None:
    machine = make("b", more=commands(1, 2, 2))
    before = machine.next_deadline()
    machine.receive(RequestVote(1, "a", START), before - 0.01)
    assert machine.next_deadline() == before


def test_candidate_refuses_others_in_its_own_term() -> None:
    machine = make()
    at, _ = stand(machine)
    machine.receive(RequestVote(1, "b", START), at)
    assert sent(machine) == [Outgoing("b", VoteResponse(1, "a", granted=False))]


def test_follower_follows_a_heartbeat_and_answers_it() -> None:
    machine = make("b")
    machine.receive(AppendEntries(2, "a", START, (), commit=0), 0.3)
    assert sent(machine) == [Outgoing("a", AppendResponse(2, "b", True, 1))]
    assert machine.leader == "a"
    assert (machine.term, machine.voted_for) == (2, None)
    assert machine.next_deadline() >= 0.3 + CONFIG.election_timeout_min


def test_heartbeats_keep_a_follower_from_standing() -> None:
    machine = make("b")
    now = 0.0
    for _ in range(100):
        now += CONFIG.heartbeat_interval
        machine.receive(AppendEntries(1, "a", START, (), commit=0), now)
        machine.tick(now)
    assert machine.role is Role.FOLLOWER
    assert machine.term == 1


def test_candidate_yields_to_a_leader_of_its_term() -> None:
    machine = make()
    at, _ = stand(machine)
    machine.receive(AppendEntries(1, "b", START, (), commit=0), at + 0.01)
    assert machine.role is Role.FOLLOWER
    assert machine.leader == "b"
    assert machine.voted_for == "a"  # the vote stays cast


def test_stale_append_is_refused_with_the_current_term_and_last_index() -> None:
    machine = make("b", hard_state=PersistentState(term=3), more=commands(3, 2, 4))
    machine.receive(AppendEntries(2, "a", START, (), commit=0), 0.1)
    assert sent(machine) == [Outgoing("a", AppendResponse(3, "b", False, 4))]
    assert machine.leader is None


@pytest.mark.parametrize(
    "message",
    [
        AppendEntries(5, "b", START, (), commit=0),
        RequestVote(5, "b", START),
        VoteResponse(5, "b", granted=False),
        AppendResponse(5, "b", False, 0),
    ],
)
def test_leader_steps_down_on_a_higher_term(
    message: AppendEntries | RequestVote | VoteResponse | AppendResponse,
) -> None:
    machine = make()
    at = elect(machine)
    machine.receive(message, at + 0.01)
    assert machine.role is Role.FOLLOWER
    assert machine.term == 5
    assert machine.lease_expires_at() is None
    assert machine.learners == frozenset()


def test_leader_heartbeats_every_interval() -> None:
    machine = make()
    at = elect(machine)
    answer(machine, "b", at + 0.001)
    answer(machine, "c", at + 0.001)
    machine.ready()
    now = at
    for _ in range(3):
        now += CONFIG.heartbeat_interval
        answer(machine, "b", now - 0.001)
        assert machine.next_deadline() == pytest.approx(now)
        machine.tick(now)
        out = sent(machine)
        heartbeat = AppendEntries(1, "a", LogPosition(1, 2), (), commit=2)
        assert out == [Outgoing("b", heartbeat), Outgoing("c", heartbeat)]


def test_leader_keeps_its_lease_while_a_majority_answers() -> None:
    machine = make()
    elected_at = elect(machine)
    now = elected_at
    for _ in range(50):
        now = machine.next_deadline()
        machine.tick(now)
        answer(machine, "c", now + 0.001)
    assert machine.is_leader
    assert machine.lease_expires_at() == pytest.approx(now + 0.001 + CONFIG.lease_timeout)
    assert machine.last_contact("c") == pytest.approx(now + 0.001)
    assert machine.last_contact("b") == elected_at  # its vote
    assert machine.last_contact("z") is None


def test_leader_steps_down_when_a_majority_goes_quiet() -> None:
    machine = make()
    at = elect(machine)  # b's grant is a contact at `at`
    assert machine.lease_expires_at() == pytest.approx(at + CONFIG.lease_timeout)
    now = at
    while machine.is_leader:
        now = machine.next_deadline()
        machine.tick(now)
    assert now == pytest.approx(at + CONFIG.lease_timeout)
    assert machine.role is Role.FOLLOWER
    assert machine.leader is None
    assert machine.term == 1  # stepping down does not change the term
    assert machine.next_deadline() >= now + CONFIG.election_timeout_min


def test_answers_of_another_term_do_not_renew_the_lease() -> None:
    machine = make()
    at = elect(machine)
    machine.receive(AppendResponse(0, "b", True, 2), at + 0.1)
    assert machine.lease_expires_at() == pytest.approx(at + CONFIG.lease_timeout)
    # A refusal of the same term is a contact: the follower knows the leader.
    machine.receive(AppendResponse(1, "c", False, 1), at + 0.1)
    assert machine.lease_expires_at() == pytest.approx(at + 0.1 + CONFIG.lease_timeout)


def test_lease_in_five_needs_two_others() -> None:
    machine = make(voters=frozenset("abcde"))
    at, _ = stand(machine)
    machine.receive(VoteResponse(1, "b", granted=True), at)
    machine.receive(VoteResponse(1, "c", granted=True), at + 0.01)
    assert machine.is_leader
    answer(machine, "b", at + 0.2)
    # c's contact at +0.01 is the second most recent: it bounds the lease.
    assert machine.lease_expires_at() == pytest.approx(at + 0.01 + CONFIG.lease_timeout)
    answer(machine, "d", at + 0.3)
    assert machine.lease_expires_at() == pytest.approx(at + 0.2 + CONFIG.lease_timeout)


def test_an_expired_lease_is_noticed_on_receive_too() -> None:
    machine = make()
    at = elect(machine)
    answer(machine, "b", at + CONFIG.lease_timeout + 0.5)
    assert machine.role is Role.FOLLOWER


def test_a_leader_ignores_an_append_of_its_own_term() -> None:
    machine = make()
    at = elect(machine)
    machine.receive(AppendEntries(1, "b", START, (), commit=0), at)
    assert machine.ready().messages == ()
    assert machine.is_leader


def test_vote_requests_from_non_voters_are_ignored() -> None:
    machine = make("b")
    machine.receive(RequestVote(9, "z", LogPosition(9, 9)), 0.1)
    machine.receive(PreVote(9, "z", LogPosition(9, 9)), 0.1)
    assert machine.ready().empty
    assert machine.term == 0


def test_appends_from_a_leader_outside_the_voters_are_taken() -> None:
    """A joining node has no voters: the leader it hears from is never one of them."""
    machine = Raft("z", config=CONFIG, rng=random.Random(1), now=0.0)
    machine.receive(AppendEntries(3, "a", LogPosition(), (voters_entry(),), commit=1), 0.1)
    ready = machine.ready()
    assert ready.entries == (voters_entry(),)
    assert ready.committed == (voters_entry(),)
    assert list(ready.messages) == [Outgoing("a", AppendResponse(3, "z", True, 1))]
    assert machine.voters == VOTERS
    assert machine.next_deadline() == math.inf  # still not a voter


# --- pre-vote ----------------------------------------------------------------------


def test_pre_vote_timeout_asks_without_changing_term_or_vote() -> None:
    machine = make(config=PRE_VOTE, hard_state=PersistentState(3, "c"), more=commands(3, 2, 4))
    at, out = stand(machine)
    assert machine.role is Role.PRE_CANDIDATE
    assert (machine.term, machine.voted_for) == (3, "c")
    request = PreVote(4, "a", LogPosition(3, 4))
    assert out == [Outgoing("b", request), Outgoing("c", request)]
    assert machine.next_deadline() >= at + CONFIG.election_timeout_min


def test_pre_vote_majority_starts_the_real_election() -> None:
    machine = make(config=PRE_VOTE, hard_state=PersistentState(3))
    at, _ = stand(machine)
    machine.receive(PreVoteResponse(3, "b", granted=False), at)
    machine.receive(PreVoteResponse(3, "b", granted=True), at)  # stale round
    assert sent(machine) == []
    machine.receive(PreVoteResponse(4, "c", granted=True), at)
    assert machine.role is Role.CANDIDATE
    assert (machine.term, machine.voted_for) == (4, "a")
    assert sent(machine) == [Outgoing(o, RequestVote(4, "a", START)) for o in ("b", "c")]


def test_pre_candidate_times_out_into_another_pre_vote_round() -> None:
    machine = make(config=PRE_VOTE)
    stand(machine)
    _, out = stand(machine)
    assert machine.role is Role.PRE_CANDIDATE
    assert machine.term == 0
    assert {o.message for o in out} == {PreVote(1, "a", START)}


def test_two_voters_asking_each_other_at_once_elect_one_in_one_round() -> None:
    """The leader died and both survivors timed out together: each grants the other's
    PreVote. Without a tie-break both stood for the same term and split the vote
    (about one failover in 20-40 on real clusters), costing an election timeout."""
    a = make("a", config=PRE_VOTE, seed=1)
    b = make("b", config=PRE_VOTE, seed=2)
    at = max(a.next_deadline(), b.next_deadline())
    a.tick(at)
    b.tick(at)
    (a_asks,) = {o.message for o in sent(a)}
    (b_asks,) = {o.message for o in sent(b)}
    a.receive(b_asks, at)
    b.receive(a_asks, at)
    assert (a.role, b.role) == (Role.PRE_CANDIDATE, Role.FOLLOWER)  # b steps back
    for answer in sent(b):
        if answer.destination == "a":
            a.receive(answer.message, at)
    assert (a.role, b.role) == (Role.CANDIDATE, Role.FOLLOWER)
    to_b = [o.message for o in sent(a) if o.destination == "b"]
    assert [type(m) for m in to_b] == [PreVoteResponse, RequestVote]
    for message in to_b:
        b.receive(message, at)  # a's grant to b's old round, then a's RequestVote
    (granted,) = {o.message for o in sent(b) if o.destination == "a"}
    assert granted == VoteResponse(1, "b", granted=True)
    a.receive(granted, at)
    assert a.is_leader
    assert (a.term, b.voted_for) == (1, "a")


def test_a_pre_candidate_with_the_better_log_does_not_step_back() -> None:
    ahead = make("b", config=PRE_VOTE, hard_state=PersistentState(1), more=commands(1, 2, 3))
    ahead.tick(ahead.next_deadline())
    ahead.ready()
    ahead.receive(PreVote(2, "a", START), ahead.next_deadline() - 0.01)
    assert ahead.role is Role.PRE_CANDIDATE  # "a" is behind: refused, and b goes on
    assert [o.message for o in sent(ahead)] == [PreVoteResponse(1, "b", granted=False)]


def test_lone_voter_skips_pre_vote() -> None:
    machine = make(voters=frozenset({"a"}), config=PRE_VOTE)
    machine.tick(0.0)
    assert machine.is_leader


def test_voter_answers_a_pre_vote_without_changing_state() -> None:
    machine = make("b", config=PRE_VOTE, hard_state=PersistentState(2, "c"))
    deadline = machine.next_deadline()
    machine.receive(PreVote(3, "a", START), 0.1)
    assert sent(machine) == [Outgoing("a", PreVoteResponse(3, "b", granted=True))]
    assert (machine.term, machine.voted_for) == (2, "c")
    assert machine.next_deadline() == deadline


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (PreVote(2, "a", LogPosition(2, 2)), "proposed term not above ours"),
        (PreVote(3, "a", LogPosition(1, 9)), "log behind"),
    ],
)
def test_voter_refuses_a_pre_vote(request_: PreVote, why: str) -> None:
    machine = make("b", config=PRE_VOTE, hard_state=PersistentState(2), more=commands(2, 2, 2))
    machine.receive(request_, 0.1)
    assert sent(machine) == [Outgoing("a", PreVoteResponse(2, "b", granted=False))], why


def test_voter_refuses_pre_votes_while_it_hears_a_leader() -> None:
    machine = make("b", config=PRE_VOTE)
    machine.receive(AppendEntries(1, "c", START, (), commit=0), 1.0)
    machine.ready()
    soon = 1.0 + CONFIG.election_timeout_min - 0.01
    machine.receive(PreVote(2, "a", START), soon)
    assert sent(machine) == [Outgoing("a", PreVoteResponse(1, "b", granted=False))]
    later = 1.0 + CONFIG.election_timeout_min + 0.001
    machine.receive(PreVote(2, "a", START), later)
    assert sent(machine) == [Outgoing("a", PreVoteResponse(2, "b", granted=True))]


def test_leader_refuses_pre_votes() -> None:
    machine = make(config=PRE_VOTE)
    at, _ = stand(machine)
    machine.receive(PreVoteResponse(1, "b", granted=True), at)
    machine.receive(VoteResponse(1, "b", granted=True), at)
    assert machine.is_leader
    machine.ready()
    machine.receive(PreVote(2, "c", LogPosition(5, 5)), at + 0.01)
    assert sent(machine) == [Outgoing("c", PreVoteResponse(1, "a", granted=False))]
    assert machine.is_leader


def test_pre_candidate_adopts_a_higher_term_from_a_refusal() -> None:
    machine = make(config=PRE_VOTE)
    at, _ = stand(machine)
    machine.receive(PreVoteResponse(7, "b", granted=False), at)
    assert machine.role is Role.FOLLOWER
    assert (machine.term, machine.voted_for) == (7, None)


def test_pre_candidate_yields_to_a_heartbeat() -> None:
    machine = make(config=PRE_VOTE)
    at, _ = stand(machine)
    machine.receive(AppendEntries(0, "b", START, (), commit=0), at)
    assert machine.role is Role.FOLLOWER
    assert machine.leader == "b"
